// Start-up phases, for measuring a restart step by step (issue 15: process
// start to the first forwarded frame). With NVEDGE_STARTUP_TRACE=1 in the
// environment each phase writes one line `startup: [thread N ]NAME MS ms` to stderr,
// MS counted from the process's start (the main thread's time origin, handed
// to worker threads in their environment); off, a phase costs one test.
// Written synchronously: a worker thread's stderr goes through the main
// thread's event loop, which is busy during start-up (or gone at a SIGKILL).
import { writeSync } from "node:fs";
import { isMainThread, threadId } from "node:worker_threads";

const on = process.env.NVEDGE_STARTUP_TRACE === "1";
if (on && isMainThread) process.env.NVEDGE_STARTUP_T0 ??= String(performance.timeOrigin);
const t0 = Number(process.env.NVEDGE_STARTUP_T0 ?? performance.timeOrigin);

/** Marks the end of a start-up phase (with NVEDGE_STARTUP_TRACE=1). */
export function phase(name: string): void {
  if (on) writeSync(2, `startup: ${isMainThread ? "" : `thread ${threadId} `}${name} ${(performance.timeOrigin + performance.now() - t0).toFixed(1)} ms\n`);
}
