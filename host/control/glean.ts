// The host's half of gleaning (PROTOCOL.md §5 `learn: "glean"`, seed §4.2
// method 1). The data plane reports the sources it sees (learn records,
// assembly/pipeline/glean.ts, drained once per batch); this decides:
// - a new MAC on an access port becomes a binding of that port's VAP (the
//   (port, VN) pair, not of one VNIC), programmed as `mac.local` with
//   `glean` into every data plane instance, stored, and announced to the
//   IMA as a signalled one is;
// - an IP it sends from (ARP, IPv4, ND) joins it (taken from another gleaned
//   binding if one had it: a move);
// - a gleaned MAC seen on another port moves there;
// - a MAC or IP signalled for a VNIC is never learned over (the data plane
//   drops such frames as spoofed-mac / spoofed-ip; this checks again);
// - at most maxLearnedPerPort (default 1024) per VAP: at the cap the VAP is
//   set full (`learn.full`), and the data plane drops unknown sources there
//   as `learn-limit` until one ages out;
// - a binding not seen for learnAgeMs (default 300000) ages out, as does
//   one whose VAP is gone (seed §3.1 containment).
// One instance per NVE (nvedge run) or per offline data plane (nvedge pcap,
// whose clock is the captures' timestamps); dependencies are injected.
import type { DpOp, VnProfile } from "../dataplane/ops.js";
import type { LearnRecord } from "../dataplane/dataplane.js";
import type { LocalChange } from "../ima-client/client.js";

export const DEFAULT_LEARN_AGE_MS = 300_000;
export const DEFAULT_MAX_LEARNED = 1024;

import type { LearnedRecord } from "../store/store.js";
export type { LearnedRecord };

export interface GleanerDeps {
  /** The VN's profile, or undefined for a VN this NVE does not have. */
  profile(vn: number): VnProfile | undefined;
  /** The tag of the (port, VN) VAP, or undefined when it is not Connected. */
  tag(port: string, vn: number): number | undefined;
  /** The MAC / IP is bound by signalling to a VNIC here (never learned over). */
  signalledMac(vn: number, mac: string): boolean;
  signalledIp(vn: number, ip: string): boolean;
  /** Programs every data plane instance. */
  apply(ops: DpOp[]): Promise<void> | void;
  /** Keeps the bindings (put: the record; del: null); optional (offline tools keep nothing). */
  persist?(changes: Map<string, LearnedRecord | null>): Promise<void> | void;
  /** Announces / withdraws with the IMA (ImaLink.applyLocal); optional. */
  announce?(changes: LocalChange[]): void;
  now(): number;
  log(line: string): void;
}

const key = (vn: number, mac: string) => `${vn}|${mac}`;

export class Gleaner {
  private readonly bound = new Map<string, LearnedRecord>();
  private readonly perVap = new Map<string, number>(); // `${port}|${vn}` -> gleaned bindings
  private readonly full = new Set<string>();
  private queue: Promise<void> = Promise.resolve();
  /** refusals, counted for `show` and logged once per key */
  readonly refused = { signalled: 0, limit: 0, noVap: 0 };
  private readonly logged = new Set<string>();

  constructor(private readonly d: GleanerDeps) {}

  /** Resolves once every change asked for so far is applied. */
  idle(): Promise<void> { return this.queue; }

  /** The gleaned bindings, for `nvedge show bindings` (marked glean). */
  list(): LearnedRecord[] {
    return [...this.bound.values()].map((b) => ({ ...b, ips: [...b.ips] }));
  }

  /** Bindings restored from the store (restart): programmed again, counted, announced. */
  restore(recs: LearnedRecord[]): Promise<void> {
    return this.run(() => {
      const ops: DpOp[] = [];
      const changed = new Set<string>();
      for (const r of recs) {
        if (this.d.tag(r.port, r.vn) === undefined || this.d.signalledMac(r.vn, r.mac)) {
          changed.add(key(r.vn, r.mac)); // its VAP is gone or a VNIC claimed it: dropped from the store
          continue;
        }
        this.bound.set(key(r.vn, r.mac), { ...r, seen: this.d.now() });
        this.count(r.port, r.vn, 1, ops);
        ops.push({ op: "mac.local", vn: r.vn, mac: r.mac, port: r.port, active: true, glean: true });
        for (const ip of r.ips) ops.push({ op: "ip", vn: r.vn, ip, mac: r.mac });
        changed.add(key(r.vn, r.mac));
      }
      return { ops, changed };
    });
  }

  /** A batch of learn records from a data plane instance. */
  learn(recs: LearnRecord[]): Promise<void> {
    return this.run(() => {
      const ops: DpOp[] = [];
      const changed = new Set<string>();
      const now = this.d.now();
      for (const r of recs) this.one(r, now, ops, changed);
      return { ops, changed };
    });
  }

  /** Ages out what was not seen for learnAgeMs, and what lost its VAP or was signalled since. */
  sweep(): Promise<void> {
    return this.run(() => {
      const ops: DpOp[] = [];
      const changed = new Set<string>();
      const now = this.d.now();
      for (const [k, b] of this.bound) {
        const p = this.d.profile(b.vn);
        const age = p?.learnAgeMs ?? DEFAULT_LEARN_AGE_MS;
        if (this.d.signalledMac(b.vn, b.mac)) {
          // a VNIC claimed it by signalling: its mac.local replaced ours; only forget it
          this.forget(k, b, ops, false);
          changed.add(k);
        } else if (!p || p.learn !== "glean" || this.d.tag(b.port, b.vn) === undefined || now - b.seen >= age) {
          this.d.log(`glean: VN ${b.vn} ${b.mac} on ${b.port} ${now - b.seen >= age ? `aged out (not seen for ${age} ms)` : "removed (its VAP or the VN's gleaning is gone)"}`);
          this.forget(k, b, ops, true);
          changed.add(k);
        }
      }
      return { ops, changed };
    });
  }

  /** Serialised: one change at a time, each applied to the data plane, stored, then announced. */
  private run(build: () => { ops: DpOp[]; changed: Set<string> }): Promise<void> {
    const p = this.queue.then(async () => {
      const { ops, changed } = build();
      if (ops.length) await this.d.apply(ops);
      if (!changed.size) return;
      if (this.d.persist) await this.d.persist(new Map([...changed].map((k) => [k, this.bound.get(k) ?? null])));
      this.d.announce?.([...changed].map((k): LocalChange => {
        const b = this.bound.get(k);
        if (b) return { vn: b.vn, mac: b.mac, ips: [...b.ips], port: b.port, active: true };
        const i = k.indexOf("|");
        return { vn: Number(k.slice(0, i)), mac: k.slice(i + 1), gone: true };
      }));
    });
    this.queue = p.catch((e) => this.d.log(`glean: ${(e as Error).message}`));
    return p;
  }

  private once(k: string, line: string): void {
    if (this.logged.size > 10_000) this.logged.clear();
    if (!this.logged.has(k)) { this.logged.add(k); this.d.log(line); }
  }

  private count(port: string, vn: number, d: number, ops: DpOp[]): number {
    const vk = `${port}|${vn}`;
    const n = (this.perVap.get(vk) ?? 0) + d;
    if (n > 0) this.perVap.set(vk, n); else this.perVap.delete(vk);
    const cap = this.d.profile(vn)?.maxLearnedPerPort ?? DEFAULT_MAX_LEARNED;
    const isFull = n >= cap;
    if (isFull !== this.full.has(vk)) {
      if (isFull) this.full.add(vk); else this.full.delete(vk);
      ops.push({ op: "learn.full", vn, port, full: isFull });
    }
    return n;
  }

  private forget(k: string, b: LearnedRecord, ops: DpOp[], unprogram: boolean): void {
    this.bound.delete(k);
    this.count(b.port, b.vn, -1, ops);
    if (!unprogram) return;
    ops.push({ op: "mac.del", vn: b.vn, mac: b.mac });
    for (const ip of b.ips) ops.push({ op: "ip.del", vn: b.vn, ip });
  }

  private one(r: LearnRecord, now: number, ops: DpOp[], changed: Set<string>): void {
    const p = this.d.profile(r.vn);
    if (!p || p.learn !== "glean") return;
    const k = key(r.vn, r.mac);
    if (this.d.signalledMac(r.vn, r.mac)) {
      this.refused.signalled++;
      return this.once(`s|${k}|${r.port}`, `glean: VN ${r.vn} ${r.mac} on ${r.port} not learned: signalled for a VNIC (PROTOCOL.md §5)`);
    }
    if (this.d.tag(r.port, r.vn) === undefined) { this.refused.noVap++; return; }
    let b = this.bound.get(k);
    if (b && b.port === r.port) b.seen = now;
    if (r.kind === "seen") return;
    if (!b || b.port !== r.port) {
      const vk = `${r.port}|${r.vn}`;
      const cap = p.maxLearnedPerPort ?? DEFAULT_MAX_LEARNED;
      if ((this.perVap.get(vk) ?? 0) >= cap) {
        this.refused.limit++;
        if (!this.full.has(vk)) { this.full.add(vk); ops.push({ op: "learn.full", vn: r.vn, port: r.port, full: true }); }
        return this.once(`l|${vk}`, `glean: VN ${r.vn} on ${r.port}: maxLearnedPerPort (${cap}) reached; unknown sources are dropped (learn-limit) until one ages out`);
      }
      if (b) {
        this.d.log(`glean: VN ${r.vn} ${r.mac} moved from ${b.port} to ${r.port}`);
        this.count(b.port, r.vn, -1, ops);
        b.port = r.port;
        b.seen = now;
      } else {
        b = { vn: r.vn, mac: r.mac, port: r.port, ips: [], seen: now };
        this.bound.set(k, b);
        this.d.log(`glean: VN ${r.vn} ${r.mac} learned on ${r.port}`);
      }
      this.count(r.port, r.vn, 1, ops);
      ops.push({ op: "mac.local", vn: r.vn, mac: r.mac, port: r.port, active: true, glean: true });
      changed.add(k);
    }
    if (r.kind !== "ip" || !r.ip || b.ips.includes(r.ip)) return;
    if (this.d.signalledIp(r.vn, r.ip)) {
      this.refused.signalled++;
      return this.once(`i|${r.vn}|${r.ip}`, `glean: VN ${r.vn} ${r.ip} not learned for ${r.mac}: signalled for a VNIC`);
    }
    // an IP another gleaned binding had moves here
    for (const [ok, o] of this.bound) {
      if (o === b || o.vn !== r.vn || !o.ips.includes(r.ip)) continue;
      o.ips = o.ips.filter((x) => x !== r.ip);
      changed.add(ok);
    }
    b.ips.push(r.ip);
    ops.push({ op: "ip", vn: r.vn, ip: r.ip, mac: r.mac });
    changed.add(k);
  }
}
