// Where the logger's lines go: stderr, written from the calling thread, and
// never blocking it (issue 13's operations: a stalled log reader must not
// stall the NVE).
//
// Written synchronously from the thread that logs, one write(2) per turn of
// the event loop (Logger.out): handing the writes to another thread cost
// ~10 µs of the NVE's CPU per attach (issue 15, bench/README.md). But a
// blocking write(2) into a pipe or terminal whose reader has stopped (a
// stuck journal or log shipper, a terminal on hold with ^S) blocks until the
// reader comes back, and with it the NVE's control plane: requests, the
// MQTT session's keep-alive, the IMA's announcements.
//
// Node itself makes a pipe or socket stderr non-blocking as soon as anything
// touches process.stderr (pino does at import), on the description the
// process inherited; pino's synchronous destination then met EAGAIN on a
// full pipe and retried in a loop, which stalled the thread all the same.
// A terminal stays blocking (^S holds every write). So the sink writes a
// pipe or terminal through its own open file description of it
// (/proc/self/fd/2 opened again, O_NONBLOCK on that description only: the
// inherited one, which a parent or sibling may share, is left as it is),
// and takes EAGAIN on any descriptor as "not now". A write the reader cannot take now (EAGAIN, or
// part of it) waits in a queue of at most `maxQueued` bytes, written again
// every `retryMs`; what does not fit is dropped, whole lines (a write's
// lines together), and counted, and the count is logged once the reader takes lines again, so
// the log says what it lost. At exit what is queued gets at most
// `exitWaitMs` more.
//
// A regular file never makes write(2) wait for a reader, and a socket (the
// journal's stream) cannot be opened again through /proc: both are written
// as before, blocking.
import { closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";

export interface SinkOptions {
  /** The descriptor the process writes its log to (default 2, stderr). */
  fd?: number;
  /** Bytes kept while the reader takes nothing (default 1 MiB); lines beyond are dropped and counted. */
  maxQueued?: number;
  /** How often a queue is written again (default 20 ms). */
  retryMs?: number;
  /** At exit (flushSync), how long a queue may still wait for the reader (default 1000 ms). */
  exitWaitMs?: number;
  /** Told how many lines were dropped, once the reader takes lines again (the logger logs it). */
  onDropped?: (lines: number, sinceMs: number) => void;
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Newlines in a string: the log's lines (every record ends with one). */
function lines(s: string | Buffer): number {
  let n = 0;
  if (typeof s === "string") { for (let i = s.indexOf("\n"); i >= 0; i = s.indexOf("\n", i + 1)) n++; }
  else { for (let i = s.indexOf(10); i >= 0; i = s.indexOf(10, i + 1)) n++; }
  return n || 1;
}

export class LogSink {
  /** The descriptor written: our own non-blocking description, or the inherited one. */
  readonly fd: number;
  /** Whether `fd` is the sink's own non-blocking description (false: the inherited descriptor, written as before). */
  readonly nonBlocking: boolean;
  private queue: Buffer[] = [];
  private queued = 0;
  private dropped = 0;
  private droppedSince = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly maxQueued: number;
  private readonly retryMs: number;
  private readonly exitWaitMs: number;

  constructor(private readonly o: SinkOptions = {}) {
    const fd = o.fd ?? 2;
    this.maxQueued = o.maxQueued ?? 1 << 20;
    this.retryMs = o.retryMs ?? 20;
    this.exitWaitMs = o.exitWaitMs ?? 1000;
    let own: number | undefined;
    try {
      const st = fstatSync(fd);
      if (st.isFIFO() || st.isCharacterDevice()) own = openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK); // libuv adds O_CLOEXEC
    } catch { /* no /proc, a pipe without a reader, a socket: the inherited descriptor, as before */ }
    this.nonBlocking = own !== undefined;
    this.fd = own ?? fd;
  }

  /** Writes `s` now if the reader takes it, else queues it (or drops it, counted). */
  write(s: string): boolean {
    if (this.queue.length > 0) return this.enqueue(Buffer.from(s));
    let n: number;
    try {
      n = writeSync(this.fd, s);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") return false; // stderr closed: nothing to be done, nothing to wait for
      n = 0;
    }
    if (n >= Buffer.byteLength(s)) return true;
    const b = Buffer.from(s).subarray(n);
    if (n === 0) return this.enqueue(b);
    // a line is never cut: the rest of the one written in part is kept, whatever the bound, then whole lines as they fit
    const end = b.indexOf(10) + 1 || b.length;
    this.push(b.subarray(0, end));
    return end < b.length ? this.enqueue(b.subarray(end)) : true;
  }

  /** Queues `b` (whole lines) if it fits in maxQueued; else drops it, counting its lines. */
  private enqueue(b: Buffer): boolean {
    if (this.queued + b.length > this.maxQueued) {
      if (this.dropped === 0) this.droppedSince = performance.now();
      this.dropped += lines(b);
      this.arm();
      return false;
    }
    this.push(b);
    return true;
  }

  private push(b: Buffer): void {
    this.queue.push(b);
    this.queued += b.length;
    this.arm();
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.drain();
      if (this.queue.length > 0 || this.dropped > 0) this.arm();
    }, this.retryMs);
    this.timer.unref();
  }

  /** Writes what is queued as far as the reader takes it; true when all was. */
  private drain(): boolean {
    while (this.queue.length > 0) {
      const b = this.queue[0];
      let n: number;
      try {
        n = writeSync(this.fd, b);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") return false;
        this.queue = []; // closed: nothing will take them
        this.queued = 0;
        return true;
      }
      this.queued -= n;
      if (n < b.length) { this.queue[0] = b.subarray(n); return false; }
      this.queue.shift();
    }
    if (this.dropped > 0) {
      const d = this.dropped, since = this.droppedSince;
      this.dropped = 0;
      this.o.onDropped?.(d, performance.now() - since);
    }
    return this.queue.length === 0;
  }

  /** At exit: what is queued, waiting at most exitWaitMs for the reader. */
  flushSync(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const end = performance.now() + this.exitWaitMs;
    while (!this.drain() && performance.now() < end) sleepSync(5);
  }

  close(): void {
    this.flushSync();
    if (this.nonBlocking) try { closeSync(this.fd); } catch { /* closed */ }
  }
}
