// Op validation for DataPlane.apply: every op of a list is checked (syntax,
// references, capacity) against the state as the ops before it in the same
// list would leave it, so a bad list applies nothing. One check per op (CHECKS)
// over one Overlay, the live tables (./tables.ts) plus the list's changes.
import type { DpOp } from "./ops.js";
import { parseMac, parseIp, ip4Value, unicastMacInto, macBytes } from "../domain/addr.js";
import { compileAcl, compileQos, learnProblems } from "./acl.js";
import type { Tables } from "./tables.js";
import { ENCAP } from "./tables.js";
import { DataPlaneError } from "./error.js";
import { L3_CHECKED_OPS } from "./l3.js";

export { DataPlaneError };

/**
 * What validate() parsed, by op index, for the apply pass to use without
 * parsing again (issue 4: a restart programs a million bindings in one
 * apply): the op's MAC as its top 16 and low 32 bits, an "ip" op's plain IPv4
 * address as a number (-1: IPv6 or a prefix, parsed again on the slow path);
 * local.bulk ops by index: their MACs (hi/lo) and plain IPv4 addresses.
 */
export interface Parsed {
  hi: Int32Array;
  lo: Int32Array;
  ip4: Float64Array;
  bulk: Map<number, { hi: Int32Array; lo: Int32Array; ip4: Float64Array }>;
}

const fail = (i: number, f: string, m: string): never => { throw new DataPlaneError(i, f, m); };

/** A set as an op list would leave it: the live keys plus the list's additions, minus its removals. */
class SetOverlay<K> {
  private added = new Set<K>();
  private removed = new Set<K>();
  constructor(private base: { has(k: K): boolean; readonly size: number }) {}
  has(k: K): boolean { return this.added.has(k) || (!this.removed.has(k) && this.base.has(k)); }
  add(k: K): void { this.removed.delete(k); if (!this.base.has(k)) this.added.add(k); }
  delete(k: K): void { this.added.delete(k); if (this.base.has(k)) this.removed.add(k); }
  get size(): number { return this.base.size + this.added.size - this.removed.size; }
  /** Empty again for the next list (a Set cleared only if used: clear() allocates a new table). */
  reset(): void {
    if (this.added.size) this.added.clear();
    if (this.removed.size) this.removed.clear();
  }
}

/**
 * The state as the list would leave it, as overlays on the live state
 * (nothing proportional to the tables is copied per apply()).
 */
class Overlay {
  readonly ports: SetOverlay<string>;
  readonly vns: SetOverlay<number>;
  // (encap:VNI) -> VN id, and each VN's key, as the list would leave them
  readonly keyOwner = new Map<string, number | null>();
  readonly keyOfVn = new Map<number, string | null>();
  newMacs = 0;
  newIps = 0;
  // flood lists and remote NVEs as the list would leave them (limits are
  // checked before anything is applied)
  readonly floodOf = new Map<number, Set<string>>();
  readonly newRemotes = new Set<string>();
  ulIs6: boolean | undefined;
  // (port, tag) -> VN as the list would leave it, so a mac.local can be
  // checked against the tags that earlier ops of the same list map
  readonly deletedVns = new Set<number>();
  // (port|tag) -> VN (null: unmapped) changed by this list, over t.tags
  readonly tagOverlay = new Map<string, number | null>();
  // memo of vnOnPort: a restart's list has a mac.local per MAC (issue 4), so
  // it is worked out once per (VN, port), not once per op; tag changes clear it
  readonly onPort = new Map<string, boolean>();

  constructor(readonly t: Tables, readonly p: Parsed) {
    this.ports = new SetOverlay<string>(t.ports);
    this.vns = new SetOverlay<number>(t.vns);
    this.reset();
  }

  /**
   * Empty again, as over the live tables with no op yet: one Overlay serves
   * every apply() of its data plane (validate resets it before and after
   * each list). Made per list, its eleven Maps and Sets were ~2.7 KB of
   * garbage per apply, an apply per request when requests come one at a
   * time (issue 15: a paced attach is a group of one). Collections are
   * cleared only if used (clear() allocates a new table), so a one-attach
   * list costs none, and a restart's large list is not kept after it.
   */
  reset(): void {
    this.ports.reset();
    this.vns.reset();
    if (this.keyOwner.size) this.keyOwner.clear();
    if (this.keyOfVn.size) this.keyOfVn.clear();
    if (this.floodOf.size) this.floodOf.clear();
    if (this.newRemotes.size) this.newRemotes.clear();
    if (this.deletedVns.size) this.deletedVns.clear();
    if (this.tagOverlay.size) this.tagOverlay.clear();
    if (this.onPort.size) this.onPort.clear();
    this.newMacs = 0;
    this.newIps = 0;
    this.ulIs6 = this.t.underlayPort >= 0 ? this.t.underlayIs6 : undefined;
  }

  ownerOf(key: string): number | null {
    return this.keyOwner.has(key) ? this.keyOwner.get(key)! : this.t.vnKeyOwner.get(key) ?? null;
  }

  keyOf(vn: number): string | null {
    if (this.keyOfVn.has(vn)) return this.keyOfVn.get(vn)!;
    const v = this.t.vns.get(vn);
    return v ? `${v.profile.encap}:${v.vni}` : null;
  }

  flood(vn: number): Set<string> {
    let f = this.floodOf.get(vn);
    if (!f) {
      const v = this.t.vns.get(vn);
      f = new Set(v ? [...v.flood].map((r) => this.t.remoteByIdx[r]!.ip.text) : []);
      this.floodOf.set(vn, f);
    }
    return f;
  }

  remoteRef(i: number, nve: string): void {
    const t = parseIp(nve, false)!.text;
    if (!this.t.remotes.has(t)) this.newRemotes.add(t);
    if (this.t.remotes.size + this.newRemotes.size > this.t.maxRemotes) fail(i, "nve", `at most ${this.t.maxRemotes} remote NVEs`);
  }

  tagVn(port: string, tag: number): number | null {
    const k = `${port}|${tag}`;
    if (this.tagOverlay.has(k)) return this.tagOverlay.get(k)!;
    const pi = this.t.ports.get(port);
    return pi === undefined ? null : this.t.tags.get((pi << 12) | tag) ?? null;
  }

  vnOnPort(vn: number, port: string): boolean {
    const mk = `${vn}|${port}`;
    let on = this.onPort.get(mk);
    if (on === undefined) {
      on = false;
      for (const [k, v] of this.tagOverlay) if (v === vn && k.startsWith(`${port}|`)) { on = true; break; }
      if (!on && !this.deletedVns.has(vn)) {
        const pi = this.t.ports.get(port);
        const live = pi === undefined ? undefined : this.t.portTagOf.get(`${vn}:${pi}`);
        on = live !== undefined && this.tagVn(port, live) === vn;
      }
      this.onPort.set(mk, on);
    }
    return on;
  }

  needVn(i: number, vn: unknown): void {
    if (!this.vns.has(vn as number)) fail(i, "vn", `unknown VN ${vn}`);
  }

  needPort(i: number, p: unknown): void {
    if (typeof p !== "string" || !this.ports.has(p)) fail(i, "port", `unknown port ${JSON.stringify(p)}`);
  }

  needMac(i: number, m: unknown): void {
    if (!unicastMacInto(m as string, this.p.hi, this.p.lo, i)) fail(i, "mac", `not a unicast MAC: ${JSON.stringify(m)}`);
  }

  needIp(i: number, s: string): void {
    const v4 = ip4Value(s);
    this.p.ip4[i] = v4;
    if (v4 < 0 && !parseIp(s)) fail(i, "ip", `not an IP address or prefix: ${JSON.stringify(s)}`);
  }

  needRemoteIp(i: number, s: unknown): void {
    const ip = parseIp(s as string, false);
    if (!ip) fail(i, "nve", `not an IP address: ${JSON.stringify(s)}`);
    if (this.ulIs6 === undefined) fail(i, "nve", "no underlay configured");
    if (ip!.is6 !== this.ulIs6) fail(i, "nve", `${s} is not of the underlay's address family`);
  }
}

type Check<K extends DpOp["op"]> = (o: Overlay, op: Extract<DpOp, { op: K }>, i: number) => void;

/** One check per op: what it must hold, and what it changes in the overlay. */
const CHECKS: { [K in DpOp["op"]]: Check<K> } = {
  underlay(o, op, i) {
    if (typeof op.port !== "string" || !op.port) fail(i, "port", "missing");
    const ip = parseIp(op.ip, false);
    if (!ip) fail(i, "ip", `not an IP address: ${JSON.stringify(op.ip)}`);
    if (!parseMac(op.mac)) fail(i, "mac", `not a MAC: ${JSON.stringify(op.mac)}`);
    if (!parseMac(op.gatewayMac)) fail(i, "gatewayMac", `not a MAC: ${JSON.stringify(op.gatewayMac)}`);
    if (o.t.remotes.size && ip!.is6 !== o.t.underlayIs6) fail(i, "ip", "cannot change the underlay's address family while remotes exist");
    if (!o.ports.has(op.port) && o.ports.size >= o.t.maxPorts) fail(i, "port", "too many ports");
    o.ports.add(op.port);
    o.ulIs6 = ip!.is6;
  },
  port(o, op, i) {
    if (typeof op.port !== "string" || !op.port) fail(i, "port", "missing");
    if (!o.ports.has(op.port) && o.ports.size >= o.t.maxPorts) fail(i, "port", `at most ${o.t.maxPorts} ports`);
    o.ports.add(op.port);
  },
  vn(o, op, i) {
    if (!Number.isInteger(op.vn) || op.vn < 1 || op.vn > 0xffffff) fail(i, "vn", `VN id out of range: ${op.vn}`);
    if (!Number.isInteger(op.vni) || op.vni < 1 || op.vni > 0xffffff) fail(i, "vni", `VNI out of range: ${op.vni}`);
    const p = op.profile;
    if (!p || !(p.encap in ENCAP)) fail(i, "profile.encap", `unknown encapsulation ${JSON.stringify(p?.encap)}`);
    if (p.encap === "nvgre" && (op.vni <= 0xfff || op.vni === 0xffffff)) fail(i, "vni", `VSID ${op.vni} is reserved (RFC 7637 §3.2)`);
    if (!Number.isInteger(p.mtu) || p.mtu < 68 || p.mtu > 9000) fail(i, "profile.mtu", `MTU out of range: ${p.mtu}`);
    // PROTOCOL.md §5 acl, qos, learn: compiled when programmed, so a bad rule is refused here
    const pr = [...compileAcl(p).problems, ...compileQos(p).problems, ...learnProblems(p)][0];
    if (pr) fail(i, `profile.${pr.path}`, pr.message);
    const key = `${p.encap}:${op.vni}`;
    const owner = o.ownerOf(key);
    if (owner !== null && owner !== op.vn) fail(i, "vni", `${p.encap} VNI ${op.vni} already used by VN ${owner}`);
    const old = o.keyOf(op.vn);
    if (old !== null) o.keyOwner.set(old, null);
    o.keyOwner.set(key, op.vn);
    o.keyOfVn.set(op.vn, key);
    if (!o.vns.has(op.vn) && o.vns.size >= o.t.maxVns) fail(i, "vn", `at most ${o.t.maxVns} VNs`);
    o.vns.add(op.vn);
  },
  "vn.del"(o, op, i) {
    o.needVn(i, op.vn); o.vns.delete(op.vn);
    { const old = o.keyOf(op.vn); if (old !== null) o.keyOwner.set(old, null); o.keyOfVn.set(op.vn, null); }
    // seed §3.1: its tags go with it
    for (const [k, v] of o.tagOverlay) if (v === op.vn) o.tagOverlay.set(k, null);
    o.deletedVns.add(op.vn);
    o.onPort.clear();
  },
  tag(o, op, i) {
    o.needPort(i, op.port); o.needVn(i, op.vn);
    if (op.port === o.t.underlayPortName()) fail(i, "port", "the underlay port carries no tags");
    if (!Number.isInteger(op.tag) || op.tag < 1 || op.tag > 4094) fail(i, "tag", `VID out of range: ${op.tag}`);
    o.tagOverlay.set(`${op.port}|${op.tag}`, op.vn);
    o.onPort.clear();
  },
  "tag.del"(o, op, i) { o.needPort(i, op.port); o.tagOverlay.set(`${op.port}|${op.tag}`, null); o.onPort.clear(); },
  "mac.local"(o, op, i) {
    o.needVn(i, op.vn); o.needMac(i, op.mac); o.needPort(i, op.port);
    if (!o.vnOnPort(op.vn, op.port)) fail(i, "port", `VN ${op.vn} has no tag on port ${op.port}`);
    if (op.vnic !== undefined && (typeof op.vnic !== "string" || op.vnic === "")) fail(i, "vnic", `must be a VNIC id (a non-empty string), not ${JSON.stringify(op.vnic)}`);
    o.newMacs++;
  },
  "local.bulk"(o, op, i) {
    o.needPort(i, op.port);
    const n = Array.isArray(op.mac) ? op.mac.length : -1;
    if (n < 0 || !Array.isArray(op.vn) || op.vn.length !== n || !Array.isArray(op.active) || op.active.length !== n ||
        !Array.isArray(op.ipStart) || op.ipStart.length !== n + 1 || op.ipStart[0] !== 0 || !Array.isArray(op.ips) || op.ipStart[n] !== op.ips.length)
      fail(i, "", "local.bulk: vn, mac, active (n entries each), ipStart (n + 1, from 0 to the length of ips) and ips do not line up");
    if (op.vnic !== undefined && (!Array.isArray(op.vnic) || op.vnic.length !== n || op.vnic.some((x) => typeof x !== "string" || x === "")))
      fail(i, "vnic", "local.bulk: vnic must hold a VNIC id (a non-empty string) per mac");
    const b = { hi: new Int32Array(n), lo: new Int32Array(n), ip4: new Float64Array(op.ips.length) };
    let vnId = -1;
    for (let k = 0; k < n; k++) {
      if (op.vn[k] !== vnId) {
        vnId = op.vn[k];
        if (!o.vns.has(vnId)) fail(i, `vn[${k}]`, `unknown VN ${vnId}`);
        if (!o.vnOnPort(vnId, op.port)) fail(i, `vn[${k}]`, `VN ${vnId} has no tag on port ${op.port}`);
      }
      if (!unicastMacInto(op.mac[k], b.hi, b.lo, k)) fail(i, `mac[${k}]`, `not a unicast MAC: ${JSON.stringify(op.mac[k])}`);
      const from = op.ipStart[k], to = op.ipStart[k + 1];
      if (!Number.isInteger(to) || to < from || to > op.ips.length) fail(i, `ipStart[${k + 1}]`, `not an index from ${from} to ${op.ips.length}: ${to}`);
      for (let j = from; j < to; j++) {
        const v4 = ip4Value(op.ips[j]);
        b.ip4[j] = v4;
        if (v4 < 0 && !parseIp(op.ips[j])) fail(i, `ips[${j}]`, `not an IP address or prefix: ${JSON.stringify(op.ips[j])}`);
      }
    }
    o.p.bulk.set(i, b);
    o.newMacs += n;
    o.newIps += op.ips.length;
  },
  "mac.remote"(o, op, i) { o.needVn(i, op.vn); o.needMac(i, op.mac); o.needRemoteIp(i, op.nve); o.remoteRef(i, op.nve); o.newMacs++; },
  "mac.del"(o, op, i) { o.needVn(i, op.vn); o.needMac(i, op.mac); },
  ip(o, op, i) {
    o.needVn(i, op.vn); o.needMac(i, op.mac);
    o.needIp(i, op.ip);
    o.newIps++;
  },
  "ip.del"(o, op, i) { o.needVn(i, op.vn); o.needIp(i, op.ip); },
  "flood.join"(o, op, i) {
    o.needVn(i, op.vn); o.needRemoteIp(i, op.nve); o.remoteRef(i, op.nve);
    const f = o.flood(op.vn);
    f.add(parseIp(op.nve, false)!.text);
    if (f.size > 1024) fail(i, "nve", "flood lists hold at most 1024 remote NVEs");
  },
  "flood.leave"(o, op, i) { o.needVn(i, op.vn); o.needRemoteIp(i, op.nve); o.flood(op.vn).delete(parseIp(op.nve, false)!.text); },
  "learn.full"(o, op, i) { o.needVn(i, op.vn); o.needPort(i, op.port); },
  nexthop(o, op, i) {
    o.needRemoteIp(i, op.nve);
    if (!Array.isArray(op.macs)) fail(i, "macs", "not a list of MACs");
    if (op.macs.length > 8) fail(i, "macs", `at most 8 next hops (${op.macs.length} given)`);
    op.macs.forEach((m, k) => {
      const v = parseMac(m);
      if (!v || (macBytes(v)[0] & 1)) fail(i, `macs.${k}`, `not a unicast MAC: ${JSON.stringify(m)}`);
    });
  },
  // the L3 service's ops and fields are checked by the L3 checker (./l3.ts), which validate() runs on the ops of L3_CHECKED_OPS
  l3domain() {},
  "l3domain.del"() {},
};

/** The reusable state of validate() for one data plane's tables (an Overlay, reset per list). */
export type ValidateScratch = Overlay;
export function validateScratch(t: Tables, p: Parsed): ValidateScratch {
  return new Overlay(t, p);
}

/**
 * Checks the whole list before anything is applied; throws the first
 * problem as a DataPlaneError naming the op and field. `fill` is the tables'
 * fill now (DataPlane.stats), for the capacity check. `scratch`: the
 * Overlay to check in, reused from list to list (validateScratch).
 */
export function validate(t: Tables, ops: DpOp[], p: Parsed, fill: () => { macs: number; macCapacity: number; ips: number; ipCapacity: number },
                         l3checker?: (vniOwner: (key: string) => number | null) => (op: DpOp, i: number) => void,
                         scratch?: ValidateScratch): void {
  // a scratch of other tables would check against the wrong live state
  const o = scratch && scratch.t === t && scratch.p === p ? scratch : new Overlay(t, p);
  // reset before too: it reads the live tables (the underlay's family), which the last list's ops changed after its check
  o.reset();
  try {
    // the L3 checker (its map and closures) made at the first op it checks:
    // an attach's list has none (issue 15: an apply per request when paced)
    let l3check: ((op: DpOp, i: number) => void) | undefined;
    ops.forEach((op, i) => {
      if (!op || typeof op !== "object") fail(i, "", "not an object");
      if (l3checker && L3_CHECKED_OPS.has(op.op)) (l3check ??= l3checker((key) => o.ownerOf(key)))(op, i); // the L3 service's ops and fields (./l3.ts)
      const check = Object.hasOwn(CHECKS, op.op) ? CHECKS[op.op] as Check<DpOp["op"]> : undefined;
      if (!check) fail(i, "op", `unknown op ${JSON.stringify((op as { op: unknown }).op)}`);
      check!(o, op as never, i);
    });
    const st = fill();
    if (st.macs + o.newMacs > st.macCapacity) fail(0, "mac", `MAC table full (${st.macCapacity} bindings)`);
    if (st.ips + o.newIps > st.ipCapacity) fail(0, "ip", `IP table full (${st.ipCapacity} bindings)`);
  } finally {
    o.reset();
  }
}
