// A process's or one of its threads' CPU time from /proc (proc(5)), for the
// benches that say where the CPU went (control: the NVE's CPU per request;
// tcp: nvedge and its busiest thread during each iperf3 test).
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

/**
 * CPU seconds (user + system, every thread: the NVE, its broker thread) a
 * process has used, from /proc/PID/stat (utime, stime in clock ticks; proc(5)).
 * Issue 15 "measure the NVE, not the bench": the NVE's CPU per request means
 * the same on a DPU whatever the agents' process costs the shared cores.
 */
export function cpuSecondsOf(pid: number, tid?: number): { user: number; sys: number } {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from 3 (state) on: comm may hold spaces
    return { user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK }; // utime (14), stime (15)
  } catch {
    return { user: NaN, sys: NaN };
  }
}
const CLK_TCK = (() => {
  try { return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100; } catch { return 100; }
})();
