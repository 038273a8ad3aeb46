// Running the system tools the lab is made of (ip, bridge, ovs-*, ethtool,
// tc): argv arrays only (never a shell string), every call bounded by a
// timeout, and a failure reported as one line naming the command and what it
// printed on stderr.
import { spawnSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";

export class CommandError extends Error {
  constructor(public argv: string[], public code: number | null, public stderr: string) {
    super(`\`${argv.join(" ")}\` failed (${code === null ? "timed out or killed" : "exit " + code})${stderr.trim() ? ": " + stderr.trim().split("\n").slice(-2).join(" / ") : ""}`);
  }
}

export interface ShOptions {
  /** Run inside this network namespace (`ip netns exec NS ...`). */
  ns?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  input?: string;
  /** Return the result instead of throwing on a non-zero exit. */
  allowFail?: boolean;
}

export interface ShResult { code: number | null; stdout: string; stderr: string }

export function nsArgv(argv: string[], ns?: string): string[] {
  return ns ? ["ip", "netns", "exec", ns, ...argv] : argv;
}

/** Runs a command to completion (synchronously: the lab is built step by step). */
export function sh(argv: string[], o: ShOptions = {}): ShResult {
  const full = nsArgv(argv, o.ns);
  const r = spawnSync(full[0], full.slice(1), {
    encoding: "utf8",
    timeout: o.timeoutMs ?? 15_000,
    env: o.env ? { ...process.env, ...o.env } : process.env,
    input: o.input,
    stdio: [o.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") {
    const res = { code: 127, stdout: "", stderr: `${full[0]}: command not found` };
    if (o.allowFail) return res;
    throw new CommandError(full, 127, res.stderr);
  }
  const res = { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  if (res.code !== 0 && !o.allowFail) throw new CommandError(full, res.code, res.stderr);
  return res;
}

/** Runs a command asynchronously (captures, generators) with a hard time bound. */
export function shAsync(argv: string[], o: ShOptions = {}): Promise<ShResult> {
  const full = nsArgv(argv, o.ns);
  return new Promise((resolve, reject) => {
    const child = spawn(full[0], full.slice(1), {
      env: o.env ? { ...process.env, ...o.env } : process.env,
      stdio: [o.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d) => { if (stdout.length < 16 << 20) stdout += d; });
    child.stderr!.setEncoding("utf8").on("data", (d) => { if (stderr.length < 1 << 20) stderr += d; });
    if (o.input !== undefined) child.stdin!.end(o.input);
    const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 15_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      const res = { code: 127, stdout, stderr: stderr + `${full[0]}: ${(e as Error).message}` };
      if (o.allowFail) resolve(res);
      else reject(new CommandError(full, 127, res.stderr));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const res = { code, stdout, stderr };
      if (code !== 0 && !o.allowFail) reject(new CommandError(full, code, stderr));
      else resolve(res);
    });
  });
}

/** Whether an executable is on PATH. */
export function have(cmd: string): boolean {
  return sh(["sh", "-c", `command -v "$0" >/dev/null 2>&1`, cmd], { allowFail: true }).code === 0;
}

/** The pids of every process inside a network namespace (`ip netns pids`). */
export function netnsPids(ns: string): number[] {
  const r = sh(["ip", "netns", "pids", ns], { allowFail: true });
  if (r.code !== 0) return [];
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((p) => Number.isInteger(p) && p > 1 && p !== process.pid);
}

export function netnsList(): string[] {
  const r = sh(["ip", "-j", "netns", "list"], { allowFail: true });
  if (r.code !== 0 || !r.stdout.trim()) return [];
  try {
    return (JSON.parse(r.stdout) as { name: string }[]).map((n) => n.name);
  } catch {
    return [];
  }
}

/** A process is alive and not a zombie (an orphaned, detached daemon may linger as Z until reaped). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after graceMs; waits (bounded) until every pid is gone. */
export async function killPids(pids: number[], graceMs = 2000): Promise<void> {
  const live = pids.filter(alive);
  for (const p of live) { try { process.kill(p, "SIGTERM"); } catch { /* gone */ } }
  const deadline = Date.now() + graceMs;
  while (live.some(alive) && Date.now() < deadline) await sleep(50);
  for (const p of live.filter(alive)) { try { process.kill(p, "SIGKILL"); } catch { /* gone */ } }
  const hard = Date.now() + 2000;
  while (live.some(alive) && Date.now() < hard) await sleep(20);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type { ChildProcess };
