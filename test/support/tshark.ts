// Wireshark's dissectors as a second, independent judge of the frames we
// produce (STYLE.md 5: tests check against real peers). Frames go to a pcap
// written with host/pcap, tshark dissects it with checksum validation on, and
// we get back each frame's protocol stack, the fields asked for and every
// expert-info item; assertClean() fails on malformed packets and on expert
// warnings/errors (bad checksums, bad lengths, unknown versions).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePcap } from "../../host/pcap/pcap.js";

/** Wireshark expert severities (epan/proto.h PI_*). */
export const SEVERITY = { comment: 0x00100000, chat: 0x00200000, note: 0x00400000, warn: 0x00600000, error: 0x00800000 } as const;

export interface Expert {
  severity: number;
  message: string;
}

export interface DissectedFrame {
  number: number;
  /** frame.protocols split on ":", e.g. ["eth","ethertype","ip","udp","vxlan","eth",...]. */
  protocols: string[];
  experts: Expert[];
  /** True when a dissector threw (Wireshark's "Malformed Packet"). */
  malformed: boolean;
  /** Every occurrence of each requested field, in order (e.g. an outer and an inner eth.src). */
  fields: Record<string, string[]>;
}

export interface DissectOptions {
  /** Extra `-d` decode-as rules, e.g. "udp.port==4790,vxlan" when a non-default port is used. */
  decodeAs?: string[];
  /** Fields to extract, e.g. "vxlan.vni", "geneve.option.class". */
  fields?: string[];
  /** Extra `-o` preferences. */
  prefs?: string[];
}

/** Checksum validation on everywhere it can be (Wireshark defaults it off), so a wrong checksum is an expert error. */
const CHECK_PREFS = ["ip.check_checksum:TRUE", "udp.check_checksum:TRUE", "tcp.check_checksum:FALSE"];

// Field separator and multi-value aggregator: control characters that occur in no message.
const SEP = "\x1e";
const AGG = "\x1f";

let available: boolean | undefined;
export function tsharkAvailable(): boolean {
  if (available === undefined) available = spawnSync("tshark", ["--version"], { stdio: "ignore" }).status === 0;
  return available;
}

function prefArgs(opts: DissectOptions): string[] {
  const supported = new Set(knownPrefs());
  const args: string[] = [];
  for (const p of [...CHECK_PREFS, ...(opts.prefs ?? [])]) if (supported.has(p.split(":")[0])) args.push("-o", p);
  for (const d of opts.decodeAs ?? []) args.push("-d", d);
  return args;
}

let prefNames: string[] | undefined;
/** The preference names this tshark knows (an unknown -o is a fatal error, and names differ between versions). */
function knownPrefs(): string[] {
  if (!prefNames) {
    const r = spawnSync("tshark", ["-G", "defaultprefs"], { encoding: "utf8", maxBuffer: 64 << 20 });
    prefNames = [...r.stdout.matchAll(/^#?([a-z0-9_.]+):/gim)].map((m) => m[1]);
  }
  return prefNames;
}

/** Dissects a pcap file. Throws if tshark fails to run. */
export function dissectFile(file: string, opts: DissectOptions = {}): DissectedFrame[] {
  const fields = opts.fields ?? [];
  const args = ["-r", file, "-n", ...prefArgs(opts), "-T", "fields", "-E", `separator=${SEP}`, "-E", "occurrence=a",
    "-E", `aggregator=${AGG}`, "-e", "frame.number", "-e", "frame.protocols", "-e", "_ws.expert.severity",
    "-e", "_ws.expert.message", "-e", "_ws.malformed", ...fields.flatMap((f) => ["-e", f])];
  const r = spawnSync("tshark", args, { encoding: "utf8", maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`tshark ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l.length).map((line) => {
    const col = line.split(SEP);
    const split = (s: string | undefined) => (s ? s.split(AGG) : []);
    const sev = split(col[2]).map(Number);
    const msg = split(col[3]);
    const out: DissectedFrame = {
      number: Number(col[0]),
      protocols: col[1].split(":"),
      experts: sev.map((severity, i) => ({ severity, message: msg[i] ?? "" })),
      malformed: split(col[4]).length > 0,
      fields: {},
    };
    fields.forEach((f, i) => (out.fields[f] = split(col[5 + i])));
    return out;
  });
}

/** The full `tshark -V` text of one frame of a file, for failure messages. */
export function verbose(file: string, frameNumber: number, opts: DissectOptions = {}): string {
  const r = spawnSync("tshark", ["-r", file, "-n", "-V", ...prefArgs(opts), "-Y", `frame.number == ${frameNumber}`],
    { encoding: "utf8", maxBuffer: 64 << 20 });
  return r.stdout;
}

/**
 * Writes `frames` to a temporary pcap (with host/pcap), dissects it and
 * removes it. With `keep` the file is left for a human and its path returned.
 */
export function dissectFrames(frames: Uint8Array[], opts: DissectOptions & { keep?: boolean } = {}):
  { frames: DissectedFrame[]; file: string; verbose: (n: number) => string } {
  const dir = mkdtempSync(join(tmpdir(), "nvl-tshark-"));
  const file = join(dir, "frames.pcap");
  writePcap(file, frames);
  try {
    const out = dissectFile(file, opts);
    // Capture -V text of the problem frames now, before the file goes away.
    const texts = new Map<number, string>();
    for (const f of out) if (problems(f).length) texts.set(f.number, verbose(file, f.number, opts));
    return { frames: out, file, verbose: (n) => texts.get(n) ?? (opts.keep ? verbose(file, n, opts) : "(no problems found)") };
  } finally {
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** The expert items at warning level or above, and the malformed flag, of a frame. */
export function problems(f: DissectedFrame): string[] {
  const out = f.experts.filter((e) => e.severity >= SEVERITY.warn).map((e) => e.message);
  if (f.malformed && !out.some((m) => /Malformed/.test(m))) out.push("Malformed Packet");
  return out;
}

/**
 * Throws (with the tshark -V text of the first offender) when any frame is
 * malformed or carries an expert warning/error.
 */
export function assertClean(result: ReturnType<typeof dissectFrames>, label = "frames"): void {
  for (const f of result.frames) {
    const p = problems(f);
    if (p.length) {
      throw new Error(`${label}: tshark frame ${f.number} (${f.protocols.join(":")}): ${p.join("; ")}\n${result.verbose(f.number)}`);
    }
  }
}

/** The protocol stack as one string, e.g. "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:udp:data". */
export function stack(f: DissectedFrame): string {
  return f.protocols.join(":");
}
