// One logger for `nvedge run`, `nvedge agent run` and `nvedge ima run`
// (issue 13): pino underneath, `--log-level` and `--log-format json|text`,
// the level changeable while running (the admin socket's `log-level`), and
// repeated events (drops, refusals) rate-limited per kind.
//
// Most of the code base logs through a plain `(line: string) => void`
// callback (NveCore, the broker, the IMA, the agent); `lineLogger()` turns
// such lines into structured records: a leading "broker: " / "mqtt: " / ...
// becomes the record's `component` (once, however often it was prefixed:
// the old loggers printed "broker: broker: ..."), and the level is read from
// the line's words (FATAL, refused, failed, ...).
//
// Client-supplied strings are escaped (issue 10 item 9): in JSON every string
// is JSON-escaped by pino; in text, control characters (CR, LF, ESC, ...) and
// the Unicode line separators become \xNN / \uNNNN, so no client string can
// start a forged log line or drive the terminal.
import { pino, type Logger as Pino, type DestinationStream } from "pino";
import { VERSION } from "../version.js";
import { LogSink } from "./sink.js";

// the levels in their own module, so the command line parses --log-level without loading pino (issue 15: start-up time)
import { LEVELS, isLevel, type Level, type LogFormat } from "./levels.js";
export { LEVELS, isLevel, type Level, type LogFormat };


/** Control characters and line/paragraph separators as escapes (text format). */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, "g");

export function escapeText(s: string): string {
  if (!UNSAFE.test(s)) return s; // the common line: nothing to escape, no new string (issue 15: two lines per attach)
  return s.replace(UNSAFE_ALL, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`;
  });
}

export interface LoggerOptions {
  level?: Level;
  format?: LogFormat;
  /** Who logs: "nve", "agent", "ima"; with `id` (the NVE, hv or IMA identity) in every record. */
  service: string;
  id?: string;
  /** Where records go (default stderr through LogSink: never blocking, what it drops counted; flushed at exit). */
  dest?: { write(s: string): unknown };
  /** Rate limit of repeated events: at most `burst` lines of one kind per `windowMs` (default 5 per 10 s). */
  burst?: number;
  windowMs?: number;
  /** Monotonic milliseconds (tests inject it). */
  now?: () => number;
}

const COMPONENTS = new Set(["log", "broker", "mqtt", "ima", "admin", "acl", "authorization", "io", "timers", "shutdown", "metrics", "reload", "agent", "relay", "systemd"]);

/** The level a free-text line is logged at. */
export function levelOf(line: string): Level {
  if (/^FATAL\b/.test(line)) return "fatal";
  if (/\b(refused|refuses|not-authorized|rate-limited|limit-exceeded|may not|dropped|exceeds|failed|cannot|error|warning|denied|not JSON)\b/i.test(line)) return "warn";
  return "info";
}

/**
 * The kind of a line, for rate limiting: its words with every token that
 * carries a number, a quoted string or a UUID removed, so "request r17 from
 * hv-3: not-authorized: ..." and "request r18 from hv-9: not-authorized: ..."
 * are one kind.
 */
export function kindOf(line: string): string {
  return line.replace(/"(?:[^"\\]|\\.)*"/g, '"…"').replace(/\S*\d\S*/g, "#").slice(0, 80);
}

export class Logger {
  readonly pino: Pino;
  private readonly seen = new Map<string, { start: number; n: number; suppressed: number; sample: string; component?: string }>();
  private readonly burst: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private sweep: NodeJS.Timeout | undefined;
  /** Text format: writes one finished line (see out()). */
  private readonly text: ((line: string) => void) | undefined;
  private readonly textId: string;
  private readonly sink: { write(s: string): unknown };
  /** Text lines of this turn of the event loop not yet handed to stderr (out()). */
  private held = "";

  constructor(o: LoggerOptions) {
    this.burst = o.burst ?? 5;
    this.windowMs = o.windowMs ?? 10_000;
    this.now = o.now ?? (() => performance.now());
    const format = o.format ?? "text";
    // stderr written from this thread, one write(2) per turn of the event loop
    // (out(): a turn's lines, JSON or text, leave together), as pino's
    // destination does by default and node's own stderr does: handed to
    // libuv's thread pool instead (sync: false), each turn's write cost a
    // futex wake-up, two context switches and an eventfd round trip besides
    // the write, ~10 µs of the NVE's CPU per attach at 6,000/s (issue 15,
    // bench/README.md).
    // stderr through LogSink (host/log/sink.ts): never blocks this thread on a stalled reader; what it had to drop is logged
    const sink = o.dest ?? new LogSink({ onDropped: (n, ms) => this.line(`log: ${n} lines dropped: stderr's reader took nothing for ${Math.round(ms)} ms`, undefined, "warn") });
    this.textId = o.id ? `${o.id} ` : "";
    this.sink = sink;
    if (format === "text") this.text = o.dest ? (l) => sink.write(l) : (l) => this.out(l);
    const stream: DestinationStream = format === "json" ? (o.dest ? sink as DestinationStream : { write: (s: string) => this.out(s) })
      : { write: (s: string) => this.text!(textLine(s)) };
    this.pino = pino({
      level: o.level ?? "info",
      base: { service: o.service, ...(o.id ? { id: o.id } : {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    }, stream);
    const flush = (sink as { flushSync?(): void }).flushSync;
    if (flush) process.once("exit", () => {
      // twice: a flush that meets a reader again logs what it had dropped (one more line)
      for (let i = 0; i < 2; i++) {
        this.release();
        try { flush.call(sink); } catch { /* stderr gone */ }
      }
    });
  }

  /**
   * stderr's lines of one turn of the event loop leave in one write, in
   * the loop's check phase (setImmediate): the NVE logs two lines per attach
   * (STANDARDS.md: every state change), and pino's destination (sonic-boom)
   * appending each line to a pending string measures that whole string again
   * (Buffer.byteLength) per line: ~30 µs per attach at 10,000/s (issue 15).
   * Held lines are written at exit (process.exit included) before the
   * destination's own flush.
   */
  private out(line: string): void {
    if (this.held === "") setImmediate(() => this.release());
    this.held += line;
  }

  private release(): void {
    if (this.held === "") return;
    const s = this.held;
    this.held = "";
    this.sink.write(s);
  }

  get level(): Level {
    return this.pino.level as Level;
  }

  setLevel(level: Level): void {
    this.pino.level = level;
  }

  /**
   * A reload's level change (SIGHUP, issue 13), with `note` logged at info
   * where it can show: before the change when the log gets quieter, after it
   * when the log gets more verbose (a change between two levels quieter than
   * info is not shown, as nothing at info is).
   */
  switchLevel(level: Level, note: string, component?: string): void {
    const verbosity = (l: Level) => (l === "silent" ? -1 : LEVELS.indexOf(l));
    const louder = verbosity(level) >= verbosity(this.level);
    if (!louder) this.line(note, component, "info");
    this.setLevel(level);
    if (louder) this.line(note, component, "info");
  }

  /** The first line of every process: what runs, which version (issue 13). */
  start(what: string, extra: Record<string, unknown> = {}): void {
    this.pino.info({ version: VERSION, pid: process.pid, ...extra }, `nvedge ${VERSION} ${what} starting (pid ${process.pid})`);
  }

  /**
   * Logs one free-text line (see the header): its component, its level, and,
   * for warnings and worse, the rate limit per kind of line.
   */
  line(text: string, component?: string, level?: Level): void {
    let msg = text;
    for (;;) {
      const m = /^([a-z]+): /.exec(msg);
      if (!m || !COMPONENTS.has(m[1]) || (component !== undefined && m[1] !== component)) break;
      component = m[1];
      msg = msg.slice(m[0].length);
    }
    const lv = level ?? levelOf(msg);
    if (!this.pino.isLevelEnabled(lv)) return;
    if (lv !== "info" && lv !== "debug" && lv !== "trace" && lv !== "fatal" && !this.admit(msg, component)) return;
    if (this.text) {
      // the record textLine() would make of pino's JSON, built directly: no JSON out and back per line
      this.text(escapeText(`${isoNow()} ${lv.toUpperCase().padEnd(5)} ${this.textId}${component ? `${component}: ` : ""}${msg}`) + "\n");
      return;
    }
    const rec = component ? { component } : {};
    this.pino[lv](rec, msg);
  }

  /** A `(line) => void` for the modules that log free text, optionally under one component. */
  lines(component?: string): (l: string) => void {
    return (l) => this.line(l, component);
  }

  /** False when this kind of line has been logged `burst` times in this window; the count is reported when the window ends. */
  private admit(msg: string, component?: string): boolean {
    const k = (component ?? "") + "|" + kindOf(msg);
    const t = this.now();
    let s = this.seen.get(k);
    if (s && t - s.start >= this.windowMs) {
      this.report(s);
      s = undefined;
    }
    if (!s) {
      if (this.seen.size >= 10_000) this.flushSuppressed();
      s = { start: t, n: 0, suppressed: 0, sample: msg, component };
      this.seen.set(k, s);
      this.armSweep();
    }
    if (s.n < this.burst) {
      s.n++;
      return true;
    }
    s.suppressed++;
    return false;
  }

  private report(s: { suppressed: number; sample: string; component?: string; start: number }): void {
    if (s.suppressed === 0) return;
    this.pino.warn({ ...(s.component ? { component: s.component } : {}), suppressed: s.suppressed },
      `${s.suppressed} more like this in ${Math.round(this.windowMs / 1000)} s were not logged: ${s.sample}`);
    s.suppressed = 0;
  }

  /** Reports and forgets every window (periodically, so a burst's count is told even if the kind never comes back). */
  flushSuppressed(): void {
    const t = this.now();
    for (const [k, s] of this.seen) {
      if (t - s.start < this.windowMs && this.seen.size < 10_000) continue;
      this.report(s);
      this.seen.delete(k);
    }
  }

  private armSweep(): void {
    if (this.sweep) return;
    this.sweep = setInterval(() => {
      this.flushSuppressed();
      if (this.seen.size === 0) {
        clearInterval(this.sweep);
        this.sweep = undefined;
      }
    }, this.windowMs);
    this.sweep.unref();
  }

  close(): void {
    this.flushSuppressed();
    if (this.sweep) clearInterval(this.sweep);
    this.sweep = undefined;
    this.release();
    this.pino.flush();
  }
}

/** The wall clock as ISO 8601, made once per millisecond (the lines of one turn share it; ~0.8 µs each otherwise). */
let isoAt = 0, isoText = "";
function isoNow(): string {
  const t = Date.now();
  if (t !== isoAt) {
    isoAt = t;
    isoText = new Date(t).toISOString();
  }
  return isoText;
}

/** One pino JSON record as a text line: `TIME LEVEL [id] component: msg key=value ...`. */
export function textLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json);
  } catch {
    return escapeText(json.trimEnd()) + "\n";
  }
  const { time, level, msg, component, service, id, ...rest } = r;
  void service;
  delete rest.pid;
  delete rest.hostname;
  const extra = Object.entries(rest).map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join("");
  const head = `${time} ${String(level).toUpperCase().padEnd(5)} ${id ? `${id} ` : ""}${component ? `${component}: ` : ""}`;
  return escapeText(`${head}${msg ?? ""}${extra}`) + "\n";
}
