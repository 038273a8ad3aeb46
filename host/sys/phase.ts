// Start-up phases, for measuring a restart step by step (issue 15: process
// start to the first forwarded frame). With NVEDGE_STARTUP_TRACE=1 in the
// environment each phase writes one line
// `startup: [thread N ]NAME MS ms (cpu C ms, waited W ms)` to stderr, MS
// counted from the process's start (the main thread's time origin, handed to
// worker threads in their environment), C the calling thread's own CPU time
// so far and W its time runnable but waiting for a CPU (Linux's
// /proc/thread-self/schedstat: on a busy machine a phase may be late for
// want of a core, not for its own work); off, a phase costs one test.
// Written synchronously: a worker thread's stderr goes through the main
// thread's event loop, which is busy during start-up (or gone at a SIGKILL).
import { readFileSync, writeSync } from "node:fs";
import { isMainThread, threadId } from "node:worker_threads";

const on = process.env.NVEDGE_STARTUP_TRACE === "1";
// the main thread's own origin: a T0 inherited from a parent process (one that traces too) is not this process's start
if (on && isMainThread) process.env.NVEDGE_STARTUP_T0 = String(performance.timeOrigin);
const t0 = Number(process.env.NVEDGE_STARTUP_T0 ?? performance.timeOrigin);

/** " (cpu C ms, waited W ms)" of the calling thread, or "" where schedstat cannot be read. */
function schedstat(): string {
  try {
    const [run, wait] = readFileSync("/proc/thread-self/schedstat", "utf8").split(" ").map(Number);
    return ` (cpu ${(run / 1e6).toFixed(1)} ms, waited ${(wait / 1e6).toFixed(1)} ms)`;
  } catch {
    return "";
  }
}

/** Marks the end of a start-up phase (with NVEDGE_STARTUP_TRACE=1). */
export function phase(name: string): void {
  if (on) writeSync(2, `startup: ${isMainThread ? "" : `thread ${threadId} `}${name} ${(performance.timeOrigin + performance.now() - t0).toFixed(1)} ms${schedstat()}\n`);
}
