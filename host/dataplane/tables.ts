// The data plane's tables as the host keeps them (DataPlane): the bookkeeping
// the wasm tables need (port, VN and remote NVE indices, tunnels and their
// reference counts, flood-list blocks in the shared pool, prefix bindings)
// and the allocators that hand those indices and blocks out and take them
// back, programming the module as they go.
import type { VnProfile } from "./ops.js";
import { parseIp, type Mac, type Ip } from "../domain/addr.js";
import { type Exports, ENC_VXLAN, ENC_GENEVE, ENC_NVGRE, MAX_PORTS, MAX_VNS, MAX_REMOTES, MK_KIND, MK_REMOTE, MR_TUN_MASK } from "./abi.js";

export const ENCAP = { vxlan: ENC_VXLAN, geneve: ENC_GENEVE, nvgre: ENC_NVGRE } as const;

export interface VnState {
  idx: number; vni: number; profile: VnProfile;
  flood: Set<number>; // remote indices
  floodOff: number; floodCap: number;
  locals: number; // (port, tag) pairs
  aclOff: number; aclCap: number; aclN: number; // its block of the ACL rule pool (assembly/pipeline/acl.ts)
}
/** The outputs a frame of `v` may make at most: its flood list, its local (port, tag) pairs, and one. */
const fanoutOf = (v: VnState) => v.flood.size + v.locals + 1;

export interface RemoteState { idx: number; ip: Ip; refs: number }
export interface TunnelState { t: number; vnIdx: number; r: number; refs: number }

export class Tables {
  readonly ports = new Map<string, number>();
  readonly portNames: string[] = [];
  underlayPort = -1;
  underlayIs6 = false;
  readonly vns = new Map<number, VnState>();
  readonly vnById: (number | undefined)[] = []; // vn index -> vn id
  readonly freeVnIdx: number[] = [];
  /**
   * VNIC id -> its policer index (1..), the bucket its MACs share
   * (pipeline/qos.ts policerKey). Never reused: a VNIC keeps its index, and
   * the map holds one small entry per VNIC this NVE has programmed.
   */
  readonly policerIdx = new Map<string, number>();
  policerOf(vnic: string | undefined): number {
    if (vnic === undefined) return 0;
    let i = this.policerIdx.get(vnic);
    if (i === undefined) this.policerIdx.set(vnic, (i = this.policerIdx.size + 1));
    return i;
  }
  readonly remotes = new Map<string, RemoteState>();
  readonly freeRemote: number[] = [];
  nextRemote = 0;
  readonly tunnels = new Map<number, TunnelState>();
  readonly tunByIdx: (TunnelState | undefined)[] = [];
  readonly remoteByIdx: (RemoteState | undefined)[] = [];
  readonly freeTun: number[] = [];
  nextTun = 0;
  readonly tags = new Map<number, number>(); // port << 12 | tag -> vn id
  readonly vnKeyOwner = new Map<string, number>(); // "encap:vni" -> vn id
  readonly portTagOf = new Map<string, number>(); // `${vnId}:${port}` -> tag
  prefixes: { vnIdx: number; ip: Ip; mac: Mac }[] = [];
  readonly floodFree = new Map<number, number[]>(); // capacity -> offsets
  floodNext = 0;
  readonly aclFree = new Map<number, number[]>(); // capacity -> offsets in the ACL rule pool
  aclNext = 0;
  /** The "nexthop" ops' MACs by remote IP (text), 6 bytes each: applied whenever the remote is (re)allocated. */
  readonly nextHops = new Map<string, Uint8Array>();
  readonly scratch: number;
  readonly maxRemotes = MAX_REMOTES;
  readonly maxVns = MAX_VNS;
  readonly maxPorts = MAX_PORTS;
  readonly tunCap: number;
  readonly floodCap: number;

  constructor(private readonly ex: Exports, private readonly u8: Uint8Array, private readonly dv: DataView) {
    this.scratch = ex.scratchPtr();
    this.tunCap = ex.tunnelCapacity();
    this.floodCap = ex.floodPoolSize();
  }

  /** A port's name by index (`#i` for one never named). */
  portName(i: number): string { return this.portNames[i] ?? `#${i}`; }

  underlayPortName(): string | undefined {
    return this.underlayPort >= 0 ? this.portNames[this.underlayPort] : undefined;
  }

  ensurePort(name: string): number {
    let p = this.ports.get(name);
    if (p === undefined) {
      p = this.portNames.length;
      this.ports.set(name, p);
      this.portNames.push(name);
    }
    return p;
  }

  scratchWrite(bytes: Uint8Array, at = 0): void {
    this.u8.set(bytes, this.scratch + at);
  }

  unmapTag(port: number, tag: number): void {
    const key = (port << 12) | tag;
    const vnId = this.tags.get(key);
    if (vnId === undefined) return;
    this.ex.setTag(port, tag, 0);
    this.tags.delete(key);
    const v = this.vns.get(vnId);
    if (v) {
      this.touchFanout(v);
      v.locals--;
    }
    if (this.portTagOf.get(`${vnId}:${port}`) === tag) this.portTagOf.delete(`${vnId}:${port}`);
  }

  acquireRemote(ipText: string): RemoteState {
    const ip = parseIp(ipText, false)!;
    let r = this.remotes.get(ip.text);
    if (!r) {
      const idx = this.freeRemote.pop() ?? this.nextRemote++;
      if (idx >= this.maxRemotes) throw new Error(`at most ${this.maxRemotes} remote NVEs`);
      this.scratchWrite(ip.bytes);
      if (this.ex.setRemote(idx, ip.is6 ? 1 : 0) !== 0) throw new Error("remote NVE table full");
      r = { idx, ip, refs: 0 };
      this.remotes.set(ip.text, r);
      this.remoteByIdx[idx] = r;
      this.writeNextHops(r);
    }
    r.refs++;
    return r;
  }

  /** Remote r's next hops from the "nexthop" op, if any (the wasm entry is cleared when r is released). */
  writeNextHops(r: RemoteState): void {
    const m = this.nextHops.get(r.ip.text);
    if (!m) return;
    const n = m.length / 6;
    for (let k = 0; k < n; k++) this.scratchWrite(m.subarray(k * 6, k * 6 + 6), k * 8);
    if (this.ex.setNextHops(r.idx, n) !== 0) throw new Error("next hops out of range");
  }

  /** Gives the VN's block of the ACL rule pool back. */
  aclRelease(v: VnState): void {
    if (!v.aclCap) return;
    const l = this.aclFree.get(v.aclCap) ?? [];
    l.push(v.aclOff);
    this.aclFree.set(v.aclCap, l);
    v.aclCap = 0; v.aclN = 0;
  }

  releaseRemote(idx: number): void {
    const r = this.remoteByIdx[idx];
    if (!r || --r.refs > 0) return;
    this.ex.delRemote(idx, r.ip.is6 ? 1 : 0);
    this.remotes.delete(r.ip.text);
    this.remoteByIdx[idx] = undefined;
    this.freeRemote.push(idx);
  }

  acquireTunnel(vnIdx: number, nve: string): TunnelState {
    const ip = parseIp(nve, false)!;
    const existing = this.remotes.get(ip.text);
    if (existing) {
      const t = this.tunnels.get(vnIdx * this.maxRemotes + existing.idx);
      if (t) { t.refs++; return t; }
    }
    const r = this.acquireRemote(nve);
    const tIdx = this.freeTun.pop() ?? this.nextTun++;
    if (tIdx >= this.tunCap) throw new Error(`at most ${this.tunCap} tunnels`);
    this.ex.buildTunnel(tIdx, vnIdx, r.idx);
    const t = { t: tIdx, vnIdx, r: r.idx, refs: 1 };
    this.tunnels.set(vnIdx * this.maxRemotes + r.idx, t);
    this.tunByIdx[tIdx] = t;
    return t;
  }

  releaseTunnel(t: TunnelState | undefined): void {
    if (!t || --t.refs > 0) return;
    this.tunnels.delete(t.vnIdx * this.maxRemotes + t.r);
    this.tunByIdx[t.t] = undefined;
    this.freeTun.push(t.t);
    this.releaseRemote(t.r);
  }

  /** A MAC entry was overwritten or removed: drop its hold on a tunnel. */
  releaseMacTarget(prev: number): void {
    if (((prev & MK_KIND) >>> 0) !== MK_REMOTE) return;
    this.releaseTunnel(this.tunByIdx[prev & MR_TUN_MASK]);
  }

  floodAlloc(cap: number): number {
    const free = this.floodFree.get(cap);
    if (free?.length) return free.pop()!;
    if (this.floodNext + cap > this.floodCap) throw new Error("flood-list pool exhausted");
    const off = this.floodNext;
    this.floodNext += cap;
    return off;
  }

  floodRelease(v: VnState): void {
    if (!v.floodCap) return;
    const l = this.floodFree.get(v.floodCap) ?? [];
    l.push(v.floodOff);
    this.floodFree.set(v.floodCap, l);
    v.floodCap = 0;
  }

  /** Writes the VN's flood list into a fresh block, then flips the VN to it. */
  writeFlood(v: VnState): void {
    const list = [...v.flood].map((r) => this.tunnels.get(v.idx * this.maxRemotes + r)!.t);
    if (list.length > 1024) throw new Error("flood lists hold at most 1024 remote NVEs");
    let cap = 4;
    while (cap < list.length) cap *= 2;
    const off = this.floodAlloc(cap);
    const base = this.ex.floodPoolPtr() + off * 4;
    list.forEach((t, j) => this.dv.setUint32(base + j * 4, t, true));
    this.ex.setFlood(v.idx, off, list.length);
    this.floodRelease(v);
    v.floodOff = off;
    v.floodCap = cap;
  }

  writePrefixes(): void {
    this.prefixes.forEach((x, j) => {
      this.scratchWrite(x.ip.bytes);
      this.ex.setPrefix(j, x.vnIdx, x.ip.is6 ? 1 : 0, x.ip.prefix!, x.mac.hi, x.mac.lo);
    });
    this.ex.setPrefixCount(this.prefixes.length);
  }

  /**
   * The wasm's worst fanout of a frame (assembly/index.ts setWorstFanout: a
   * batch stops when the output area could not hold the next frame's worst
   * case), kept after every apply. Worked out from the VNs whose flood list
   * or (port, tag) count changed (touchFanout), not by a walk over every VN
   * per apply: that walk was an apply's cost proportional to the VN table
   * (0.3 µs at 100 VNs, 17 µs at 4,000), and an apply is made per request
   * when they come one at a time (issue 15). A VN at the worst value that
   * shrinks (or goes) makes one walk, so the value never stays below the
   * truth, which could overrun the output area; above it only a batch ends
   * early. -1: not given yet (the first apply walks every VN).
   */
  private worstFanout = -1;
  private fanoutBefore = new Map<VnState, number>();

  /** Before `v`'s flood list or (port, tag) count changes, or `v` is deleted. */
  touchFanout(v: VnState): void {
    if (!this.fanoutBefore.has(v)) this.fanoutBefore.set(v, fanoutOf(v));
  }

  /** The worst fanout as last given to the wasm (-1: none yet). */
  get fanout(): number { return this.worstFanout; }

  updateFanout(): void {
    let worst = this.worstFanout;
    let walk = worst < 0;
    if (!walk && this.fanoutBefore.size === 0) return;
    for (const [v, before] of this.fanoutBefore) {
      const id = this.vnById[v.idx];
      const now = id !== undefined && this.vns.get(id) === v ? fanoutOf(v) : 0;
      if (now > worst) worst = now;
      else if (now < before && before >= this.worstFanout) walk = true;
    }
    this.fanoutBefore.clear();
    if (walk) {
      worst = 1;
      for (const v of this.vns.values()) worst = Math.max(worst, fanoutOf(v));
    }
    if (worst !== this.worstFanout) {
      this.worstFanout = worst;
      this.ex.setWorstFanout(worst);
    }
  }
}
