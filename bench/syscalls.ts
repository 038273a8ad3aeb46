// The syscalls a process makes during one bench case, counted by the
// kernel's tracepoints (perf stat, counting mode: no ring buffer, no ptrace,
// so the case runs at nearly its own speed; strace -c slowed every syscall
// by several µs and changed how many packets each read found). Issue 15
// (bench/README.md "rate15"): the control bench's CPU per attach in
// Mosquitto, the agents and the NVE is mostly the kernel's, and what it is
// made of is a count of reads, writes and epoll calls per attach.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";

/** The syscalls counted one by one (the rest is `other`: raw_syscalls:sys_enter less these). */
const NAMED = ["read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg", "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "getpid", "mprotect", "madvise"];

export interface SyscallCounts { total: number; switches: number; by: Record<string, number> }

/**
 * Starts counting every syscall of each named process (all its threads);
 * stop() ends the count and returns them by name. A process perf could not
 * count (perf not installed: Debian's `linux-perf`; not root; no tracefs)
 * is missing from what stop() returns.
 */
export function countSyscalls(pids: Record<string, number>): { stop(): Promise<Record<string, SyscallCounts>> } {
  const dir = mkdtempSync("/tmp/nvl-bench-syscalls-");
  // and the times the process was switched out (context-switches: a wake-up of a peer on the same CPU preempting it shows here)
  const events = ["raw_syscalls:sys_enter", "context-switches", ...NAMED.map((n) => `syscalls:sys_enter_${n}`)];
  const procs: [string, ChildProcess, string][] = [];
  for (const [name, pid] of Object.entries(pids)) {
    const out = `${dir}/${name}.csv`;
    const p = spawn("perf", ["stat", "-x", ",", "-o", out, "-e", events.join(","), "-p", String(pid)], { stdio: "ignore" });
    p.on("error", () => {});
    procs.push([name, p, out]);
  }
  return {
    async stop() {
      const res: Record<string, SyscallCounts> = {};
      await Promise.all(procs.map(([, p]) => new Promise<void>((r) => {
        if (p.exitCode !== null || p.signalCode !== null) return r();
        p.once("exit", () => r());
        p.kill("SIGINT");
      })));
      for (const [name, , out] of procs) {
        let text = "";
        try { text = readFileSync(out, "utf8"); } catch { continue; }
        res[name] = parsePerfStat(text);
      }
      rmSync(dir, { recursive: true, force: true });
      return res;
    },
  };
}

/**
 * perf stat's CSV (`-x ,`: count, unit, event, ...; "<not counted>" for an
 * event that never ran) as totals by syscall name; `other` is what the
 * named syscalls leave of raw_syscalls:sys_enter.
 */
export function parsePerfStat(text: string): SyscallCounts {
  const by: Record<string, number> = {};
  let total = 0, switches = 0;
  for (const line of text.split("\n")) {
    const f = line.split(",");
    const n = Number(f[0]), ev = f[2];
    if (!ev || f[0] === "" || !Number.isFinite(n)) continue;
    if (ev === "raw_syscalls:sys_enter") total = n;
    else if (ev === "context-switches") switches = n;
    else if (ev.startsWith("syscalls:sys_enter_") && n > 0) by[ev.slice("syscalls:sys_enter_".length)] = n;
  }
  const named = Object.values(by).reduce((s, x) => s + x, 0);
  if (total > named) by.other = total - named;
  return { total, switches, by };
}

/** Counts per operation (two decimals), each process's total first. */
export function perOp(c: Record<string, SyscallCounts>, ops: number): Record<string, Record<string, number>> {
  const r = (x: number) => Math.round((x * 100) / Math.max(1, ops)) / 100;
  return Object.fromEntries(Object.entries(c).map(([name, { total, switches, by }]) => [name, { total: r(total), switches: r(switches), ...Object.fromEntries(Object.entries(by).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, r(v)])) }]));
}
