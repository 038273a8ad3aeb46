// The host side of the data plane: loads the WebAssembly module (./load.ts),
// keeps the bookkeeping the tables need (./tables.ts) and programs the tables
// with DpOps, each list checked whole first (./validate.ts); reads counters
// and traces back (./decode.ts). The memory ABI: ./abi.ts, generated from
// assembly/ (scripts/abi.mjs). Hot path: process(n), one call per batch over
// frames already in memory.
import type { DpOp } from "./ops.js";
import { phase } from "../sys/phase.js";
import { parseMac, parseIp, macBytes, type Ip } from "../domain/addr.js";
import { L3State } from "./l3.js";
import { compileAcl, compileQos, DIR_FROM, DIR_TO } from "./acl.js";
import {
  type Exports, IN_DESC, OUT_DESC, I_OFF, I_LEN, I_PORT, I_FLAGS, O_PORT, O_HDRLEN, O_DATA, O_DATALEN, O_IN, O_VN, OF_GSO,
  VNF_PORTSEC, VNF_ARPSUP, VNF_DSCP_FIXED, MAX_PREFIXES, H64_SLOT, HIP_SLOT, PORT_ACCESS, PORT_UNDERLAY, E_FULL, PUNT_REC, TRACE_REC,
} from "./abi.js";
import { type Layout, type CreateOptions, instantiate, checkAbi, layoutOf, dropNamesOf, wasmModule } from "./load.js";
import { imageSubject, encodeImage, restoreImage, touchedOf, ImageEncoder, type ImageKey } from "./image.js";
import { Tables, ENCAP, type VnState } from "./tables.js";
import { validate, validateScratch, DataPlaneError, type Parsed, type ValidateScratch } from "./validate.js";
import { readDrops, readCounters, readTrace, type TraceResult } from "./decode.js";

export { DataPlaneError, type Layout, type CreateOptions };

/** One source the data plane gleaned (assembly/pipeline/glean.ts): a MAC (new or moved), an IP of it, or a MAC seen again. */
export interface LearnRecord { vn: number; port: string; kind: "mac" | "ip" | "seen"; mac: string; ip?: string }

/** An IPv6 address in its canonical text (RFC 5952), through the URL parser. */
function normIp6(s: string): string { return new URL(`http://[${s}]`).hostname.slice(1, -1); }

export class DataPlane {
  readonly memory: WebAssembly.Memory;
  readonly layout: Layout;
  readonly dropNames: string[];
  consumed = 0;
  private ex: Exports;
  private hugeBytes = 0;
  /** Bytes a prefault thread faulted in ahead of the image's restore (CreateOptions.prefault; 0: none). */
  prefaulted = 0;
  private u8: Uint8Array;
  private dv: DataView;
  /** The tables' bookkeeping and allocators. */
  private t: Tables;
  // What validate() parsed, by op index, for applyOne to use without parsing
  // again (./validate.ts Parsed).
  /** validate()'s overlay, reused by every apply() (./validate.ts ValidateScratch). */
  private scratch: ValidateScratch | undefined;
  private parsed: Parsed = { hi: new Int32Array(0), lo: new Int32Array(0), ip4: new Float64Array(0), bulk: new Map() };
  /** The L3 service's domains and their tunnels (./l3.ts). */
  private readonly l3: L3State;
  private readonly clockPtr: number;
  private now: () => number = () => performance.now();

  private constructor(ex: Exports) {
    this.ex = ex;
    this.memory = ex.memory;
    this.u8 = new Uint8Array(ex.memory.buffer);
    this.dv = new DataView(ex.memory.buffer);
    checkAbi(ex);
    this.layout = layoutOf(ex);
    this.t = new Tables(ex, this.u8, this.dv);
    this.dropNames = dropNamesOf(ex);
    this.clockPtr = ex.clockPtr();
    const t = this.t;
    this.l3 = new L3State({
      ex, scratch: (b, at) => t.scratchWrite(b, at),
      allocVnIdx: () => { const i = t.freeVnIdx.pop() ?? t.vnById.length; t.vnById[i] = undefined; return i; },
      freeVnIdx: (i) => { t.freeVnIdx.push(i); },
      vnIdx: (id) => t.vns.get(id)?.idx,
      floodOf: (id) => [...(t.vns.get(id)?.flood ?? [])].map((r) => t.remoteByIdx[r]!.ip.text),
      acquireTunnel: (vnIdx, nve) => { const x = t.acquireTunnel(vnIdx, nve); return { t: x.t, r: x.r }; },
      releaseTunnel: (vnIdx, r) => t.releaseTunnel(t.tunnels.get(vnIdx * t.maxRemotes + r)),
      rebuildTunnels: (vnIdx) => { for (const x of t.tunnels.values()) if (x.vnIdx === vnIdx) ex.buildTunnel(x.t, x.vnIdx, x.r); },
      fail: (i, f, m) => { throw new DataPlaneError(i, f, m); },
    });
  }

  /** A new, independent data plane instance with its own memory and tables. */
  static async create(o: CreateOptions = {}): Promise<DataPlane> {
    const { ex, huge } = await instantiate(o);
    const dp = new DataPlane(ex);
    dp.hugeBytes = huge;
    if (o.clock) dp.now = o.clock;
    if (o.image) {
      const join = o.prefault?.(ex.memory.buffer, touchedOf(o.image, ex.memory.buffer.byteLength));
      try {
        restoreImage(dp.imaged(!!o.debug), o.image);
      } finally {
        // the thread writes this memory: joined before it can be dropped (a refused image)
        dp.prefaulted = join?.() ?? 0;
        phase("image: prefault joined");
      }
    }
    return dp;
  }

  /** The tables as an image keyed `key` (./image.ts; issue 15). */
  snapshot(key: ImageKey, debug = false): Uint8Array {
    return encodeImage(this.imaged(debug), key);
  }

  /** The tables as an image taken a slice at a time (./image.ts ImageEncoder): no op may be applied until it is done. */
  imageEncoder(key: ImageKey, debug = false): ImageEncoder {
    return new ImageEncoder(this.imaged(debug), key);
  }

  /** What an image holds of this instance (./image.ts imageSubject). */
  private imaged(debug: boolean) {
    // the remote NVEs, for the next-hop resolver of a data plane started from the image
    return imageSubject(this.ex, wasmModule(debug).globals, { t: this.t, l3: this.l3 }, { remotes: [...this.t.remotes.keys()] });
  }

  portIndex(name: string): number { return this.t.ports.get(name) ?? -1; }
  portName(i: number): string { return this.t.portName(i); }
  get portList(): string[] { return [...this.t.portNames]; }
  vnIndex(vnId: number): number { return this.t.vns.get(vnId)?.idx ?? -1; }
  vnId(idx: number): number | undefined { return this.t.vnById[idx]; }

  /** Bindings and table fill, for `show` and the bench's bytes per binding. */
  stats() {
    const e = this.ex;
    return {
      macs: e.macCount(), macCapacity: e.macCapacity(), macSlots: e.macSlots(),
      ips: e.ipCount(), ipCapacity: e.ipCapacity(), ipSlots: e.ipSlots(),
      macBytesPerSlot: H64_SLOT, ipBytesPerSlot: HIP_SLOT,
      vns: this.t.vns.size, remotes: this.t.remotes.size, tunnels: this.t.tunnels.size,
      // frames forwarded by the fast paths (assembly/pipeline/fast.ts), the rest took the full path
      fastPathFrames: Number(e.fastFrames.value),
      // bytes of memory advised for transparent huge pages (CreateOptions.adviseHuge)
      hugePagesAdvised: this.hugeBytes,
    };
  }

  // ---------------------------------------------------------------- programming

  /**
   * Applies the ops in order, between two batches. Every op is checked
   * first (syntax, references, capacity) so a bad list applies nothing.
   */
  apply(ops: DpOp[]): void {
    const p = this.parsed;
    if (p.hi.length < ops.length) {
      p.hi = new Int32Array(ops.length);
      p.lo = new Int32Array(ops.length);
      p.ip4 = new Float64Array(ops.length);
    }
    try {
      validate(this.t, ops, p, () => this.stats(), (owner) => this.l3.checker(owner), this.scratch ??= validateScratch(this.t, p));
      for (let i = 0; i < ops.length; i++) this.applyOne(ops[i], i);
      this.t.updateFanout();
    } finally {
      p.bulk.clear();
      // a restart's million ops need big arrays once; do not keep them
      if (p.hi.length > 65536) {
        p.hi = new Int32Array(0);
        p.lo = new Int32Array(0);
        p.ip4 = new Float64Array(0);
      }
    }
  }

  private check(rc: number, i: number, what: string): void {
    if (rc !== 0) throw new DataPlaneError(i, what, rc === E_FULL ? "table full" : "out of range");
  }

  private applyOne(op: DpOp, i: number): void {
    const ex = this.ex;
    this.l3.before(op);
    switch (op.op) {
      case "underlay": {
        const p = this.t.ensurePort(op.port);
        const ip = parseIp(op.ip, false)!;
        const s = new Uint8Array(32);
        const m = parseMac(op.mac)!, g = parseMac(op.gatewayMac)!;
        s.set(macBytes(m), 0); s.set(macBytes(g), 8); s.set(ip.bytes, 16);
        this.t.scratchWrite(s);
        this.check(ex.setPort(p, PORT_UNDERLAY), i, "port");
        this.check(ex.setUnderlay(p, ip.is6 ? 1 : 0, op.udpPort ?? 4789, op.genevePort ?? 6081), i, "underlay");
        this.t.underlayPort = p;
        this.t.underlayIs6 = ip.is6;
        for (const t of this.t.tunnels.values()) ex.buildTunnel(t.t, t.vnIdx, t.r);
        break;
      }
      case "port": {
        const p = this.t.ensurePort(op.port);
        if (p !== this.t.underlayPort) this.check(ex.setPort(p, PORT_ACCESS), i, "port");
        break;
      }
      case "vn": {
        const p = op.profile;
        const flags = (p.portSecurity ? VNF_PORTSEC : 0) | (p.arpSuppress ? VNF_ARPSUP : 0) |
          (p.qos?.dscp !== undefined ? VNF_DSCP_FIXED : 0);
        let v = this.t.vns.get(op.vn);
        if (!v) {
          const idx = this.t.freeVnIdx.pop() ?? this.t.vnById.length;
          v = { idx, vni: op.vni, profile: p, flood: new Set(), floodOff: 0, floodCap: 0, locals: 0, aclOff: 0, aclCap: 0, aclN: 0 };
          this.t.vns.set(op.vn, v);
          this.t.vnById[idx] = op.vn;
        }
        if (this.t.vnKeyOwner.get(`${v.profile.encap}:${v.vni}`) === op.vn) this.t.vnKeyOwner.delete(`${v.profile.encap}:${v.vni}`);
        v.vni = op.vni;
        v.profile = { ...p };
        this.t.vnKeyOwner.set(`${p.encap}:${op.vni}`, op.vn);
        this.check(ex.setVn(v.idx, op.vni, ENCAP[p.encap], p.mtu, flags, p.qos?.dscp ?? 0), i, "vn");
        this.programProfile(v, i);
        // seed §4.5: a profile change reaches the data plane at once; the
        // prebuilt headers of this VN follow it
        for (const t of this.t.tunnels.values()) if (t.vnIdx === v.idx) ex.buildTunnel(t.t, t.vnIdx, t.r);
        break;
      }
      case "vn.del": {
        const v = this.t.vns.get(op.vn)!;
        // seed §3.1: deleting an entity deletes everything it contains
        for (const [k, id] of [...this.t.tags]) if (id === op.vn) this.t.unmapTag(k >> 12, k & 0xfff);
        ex.setFlood(v.idx, 0, 0);
        ex.purgeVn(v.idx);
        for (const [key, t] of [...this.t.tunnels]) if (t.vnIdx === v.idx) {
          ex.setVtep(v.idx, t.r, 0);
          this.t.tunnels.delete(key);
          this.t.tunByIdx[t.t] = undefined;
          this.t.freeTun.push(t.t);
          this.t.releaseRemote(t.r);
        }
        this.t.floodRelease(v);
        ex.setAcl(v.idx, 0, 0, 0, 0, 0);
        this.t.aclRelease(v);
        this.t.prefixes = this.t.prefixes.filter((x) => x.vnIdx !== v.idx);
        this.t.writePrefixes();
        ex.delVn(v.idx);
        this.t.touchFanout(v);
        this.t.vns.delete(op.vn);
        this.t.vnKeyOwner.delete(`${v.profile.encap}:${v.vni}`);
        this.t.vnById[v.idx] = undefined;
        this.t.freeVnIdx.push(v.idx);
        for (const k of [...this.t.portTagOf.keys()]) if (k.startsWith(`${op.vn}:`)) this.t.portTagOf.delete(k);
        break;
      }
      case "tag": {
        const port = this.t.ports.get(op.port)!;
        const v = this.t.vns.get(op.vn)!;
        const key = (port << 12) | op.tag;
        const old = this.t.tags.get(key);
        if (old === op.vn) break;
        if (old !== undefined) this.t.unmapTag(port, op.tag);
        this.check(ex.setTag(port, op.tag, v.idx + 1), i, "tag");
        this.t.touchFanout(v);
        v.locals++;
        this.t.tags.set(key, op.vn);
        this.t.portTagOf.set(`${op.vn}:${port}`, op.tag);
        break;
      }
      case "tag.del": {
        const port = this.t.ports.get(op.port)!;
        if (this.t.tags.has((port << 12) | op.tag)) this.t.unmapTag(port, op.tag);
        break;
      }
      case "mac.local": {
        const v = this.t.vns.get(op.vn)!;
        const port = this.t.ports.get(op.port)!;
        const tag = this.t.portTagOf.get(`${op.vn}:${port}`);
        if (tag === undefined) throw new DataPlaneError(i, "port", `VN ${op.vn} has no tag on port ${op.port}`);
        const hi = this.parsed.hi[i], lo = this.parsed.lo[i] >>> 0;
        const prev = ex.getMac(v.idx, hi, lo) >>> 0;
        if (op.glean) this.check(ex.setMacGleaned(v.idx, hi, lo, port, tag), i, "mac");
        else this.check(ex.setMacLocal(v.idx, hi, lo, port, tag, op.active ? 1 : 0, this.t.policerOf(op.vnic)), i, "mac");
        this.t.releaseMacTarget(prev);
        break;
      }
      case "learn.full": {
        this.check(ex.setLearnFull(this.t.vns.get(op.vn)!.idx, this.t.ports.get(op.port)!, op.full ? 1 : 0), i, "port");
        break;
      }
      case "mac.remote": {
        const v = this.t.vns.get(op.vn)!;
        const hi = this.parsed.hi[i], lo = this.parsed.lo[i] >>> 0;
        const t = this.t.acquireTunnel(v.idx, op.nve);
        const prev = ex.getMac(v.idx, hi, lo) >>> 0;
        this.check(ex.setMacRemote(v.idx, hi, lo, t.t), i, "mac");
        this.t.releaseMacTarget(prev);
        break;
      }
      case "mac.del": {
        const v = this.t.vns.get(op.vn)!;
        const m = parseMac(op.mac)!;
        const prev = ex.getMac(v.idx, m.hi, m.lo) >>> 0;
        ex.delMac(v.idx, m.hi, m.lo);
        this.t.releaseMacTarget(prev);
        break;
      }
      case "ip": case "ip.del": {
        const v = this.t.vns.get(op.vn)!;
        this.ipOp(op.op === "ip", v, op.ip, this.parsed.ip4[i], this.parsed.hi[i], this.parsed.lo[i], op.op === "ip" ? op.mac : "", i);
        break;
      }
      case "local.bulk": {
        const b = this.parsed.bulk.get(i)!;
        const port = this.t.ports.get(op.port)!;
        const n = op.mac.length;
        // as n mac.local ops then the ip ops (ops.ts), without an object per binding
        let vnId = -1, v: VnState | undefined, tag: number | undefined;
        for (let k = 0; k < n; k++) {
          if (op.vn[k] !== vnId) {
            vnId = op.vn[k];
            v = this.t.vns.get(vnId)!;
            tag = this.t.portTagOf.get(`${vnId}:${port}`);
          }
          if (tag === undefined) throw new DataPlaneError(i, `vn[${k}]`, `VN ${vnId} has no tag on port ${op.port}`);
          const prev = ex.getMac(v!.idx, b.hi[k], b.lo[k]) >>> 0;
          this.check(ex.setMacLocal(v!.idx, b.hi[k], b.lo[k], port, tag, op.active[k] ? 1 : 0, this.t.policerOf(op.vnic?.[k])), i, "mac");
          this.t.releaseMacTarget(prev);
        }
        vnId = -1;
        for (let k = 0; k < n; k++) {
          if (op.vn[k] !== vnId) v = this.t.vns.get((vnId = op.vn[k]))!;
          for (let j = op.ipStart[k], e = op.ipStart[k + 1]; j < e; j++) this.ipOp(true, v!, op.ips[j], b.ip4[j], b.hi[k], b.lo[k], op.mac[k], i);
        }
        break;
      }
      case "flood.join": {
        const v = this.t.vns.get(op.vn)!;
        const r = this.t.remotes.get(parseIp(op.nve, false)!.text);
        if (r && v.flood.has(r.idx)) break;
        const t = this.t.acquireTunnel(v.idx, op.nve);
        this.t.touchFanout(v);
        v.flood.add(t.r);
        ex.setVtep(v.idx, t.r, 1);
        this.t.writeFlood(v);
        break;
      }
      case "flood.leave": {
        const v = this.t.vns.get(op.vn)!;
        const r = this.t.remotes.get(parseIp(op.nve, false)!.text);
        if (!r || !v.flood.has(r.idx)) break;
        this.t.touchFanout(v);
        v.flood.delete(r.idx);
        ex.setVtep(v.idx, r.idx, 0);
        this.t.writeFlood(v);
        this.t.releaseTunnel(this.t.tunnels.get(v.idx * this.t.maxRemotes + r.idx)!);
        break;
      }
      case "nexthop": {
        const ip = parseIp(op.nve, false)!;
        const m = new Uint8Array(op.macs.length * 6);
        op.macs.forEach((x, k) => m.set(macBytes(parseMac(x)!), k * 6));
        this.t.nextHops.set(ip.text, m);
        const r = this.t.remotes.get(ip.text);
        if (!r) break;
        this.t.writeNextHops(r);
        // the prebuilt headers toward r carry its next hop (pipeline/nexthop.ts)
        for (const t of this.t.tunnels.values()) if (t.r === r.idx) ex.buildTunnel(t.t, t.vnIdx, t.r);
        break;
      }
    }
    this.l3.after(op);
  }

  /**
   * The profile's ACL (a fresh block of the rule pool, then the VN flipped to
   * it, its counters from 0) and QoS, compiled once here (./acl.ts;
   * assembly/pipeline/acl.ts, qos.ts). validate() has checked them.
   */
  private programProfile(v: VnState, i: number): void {
    const ex = this.ex;
    const acl = compileAcl(v.profile).acl!;
    const n = acl.rules.length;
    // the VN's block: the from-VNIC list at off, the to-VNIC list at off + cap
    // (a "both" rule in each), each slot's deny counter at the rule's index
    const from = acl.rules.map((r, k) => ({ r, k })).filter((x) => x.r.dirs & DIR_FROM);
    const to = acl.rules.map((r, k) => ({ r, k })).filter((x) => x.r.dirs & DIR_TO);
    let off = 0, cap = 0;
    if (n > 0) {
      cap = 4;
      while (cap < n) cap *= 2;
      const free = this.t.aclFree.get(cap);
      if (free?.length) off = free.pop()!;
      else {
        if (this.t.aclNext + 2 * cap > 65536) throw new DataPlaneError(i, "profile.acl", "the ACL rule pool (65536 slots) is full");
        off = this.t.aclNext;
        this.t.aclNext += 2 * cap;
      }
      const s = new Uint8Array(32);
      const put = (slot: number, { r, k }: { r: (typeof acl.rules)[number]; k: number }) => {
        s.fill(0);
        if (r.src) s.set(r.src.bytes, 0);
        if (r.dst) s.set(r.dst.bytes, 16);
        this.t.scratchWrite(s);
        this.check(ex.setAclRule(slot, k, r.family, r.action, r.has, r.proto, r.icmpType, r.srcLo, r.srcHi, r.dstLo, r.dstHi,
          r.src ? r.src.plen : 0xff, r.dst ? r.dst.plen : 0xff), i, "profile.acl");
      };
      from.forEach((x, j) => put(off + j, x));
      to.forEach((x, j) => put(off + cap + j, x));
    }
    this.check(ex.setAcl(v.idx, off, cap, from.length, to.length, acl.deny ? 1 : 0), i, "profile.acl");
    this.t.aclRelease(v);
    v.aclOff = off; v.aclCap = cap; v.aclN = n;
    const q = compileQos(v.profile).qos!;
    this.check(ex.setQos(v.idx, q.pcp, q.rateBytesPerMs, q.depthBytes), i, "profile.qos");
    this.check(ex.setGlean(v.idx, v.profile.learn === "glean" ? 1 : 0, v.profile.learnAgeMs ?? 300_000), i, "profile.learn");
  }

  /**
   * An "ip" (add) or "ip.del" op. v4: the plain IPv4 address validate() parsed
   * (-1: IPv6 or a prefix, parsed here); hi/lo: the MAC validate() parsed.
   */
  private ipOp(add: boolean, v: VnState, text: string, v4: number, hi: number, lo: number, macText: string, i: number): void {
    const ex = this.ex;
    if (v4 >= 0) {
      // straight into the scratch area in network order: no allocation (issue 4)
      this.dv.setUint32(this.t.scratch, v4, false);
      if (add) this.check(ex.setIp(v.idx, 0, hi, lo >>> 0), i, "ip");
      else ex.delIp(v.idx, 0);
      return;
    }
    const ip = parseIp(text)!;
    const isFull = ip.prefix === null || ip.prefix === (ip.is6 ? 128 : 32);
    if (isFull) {
      this.t.scratchWrite(ip.bytes);
      if (add) this.check(ex.setIp(v.idx, ip.is6 ? 1 : 0, hi, lo >>> 0), i, "ip");
      else ex.delIp(v.idx, ip.is6 ? 1 : 0);
    } else {
      const same = (x: { vnIdx: number; ip: Ip }) => x.vnIdx === v.idx && x.ip.is6 === ip.is6 &&
        x.ip.prefix === ip.prefix && x.ip.bytes.every((b, j) => b === ip.bytes[j]);
      this.t.prefixes = this.t.prefixes.filter((x) => !same(x));
      if (add) {
        if (this.t.prefixes.length >= MAX_PREFIXES) throw new DataPlaneError(i, "ip", `at most ${MAX_PREFIXES} prefix bindings`);
        this.t.prefixes.push({ vnIdx: v.idx, ip, mac: parseMac(macText)! });
      }
      this.t.writePrefixes();
    }
  }

  // ---------------------------------------------------------------- frames

  /** Hot path: handles in-desc[0..n), returns the output count; sets `consumed`. */
  process(n: number): number {
    this.dv.setFloat64(this.clockPtr, this.now(), true); // assembly/pipeline/qos.ts: the batch's time, no call
    const out = this.ex.process(n);
    this.consumed = this.ex.consumed.value;
    return out;
  }

  /**
   * Copies frame bytes into slot i with its in-desc. `offload` is what a
   * receiver with offloads passes on (host/io/native): the in-desc flags and
   * the bytes written just before the frame (its virtio-net header);
   * `headroom` moves the frame's start (default the layout's).
   */
  load(i: number, port: number, frame: Uint8Array, offload?: { flags: number; before?: Uint8Array; headroom?: number }): void {
    const L = this.layout;
    const head = offload?.headroom ?? L.headroom;
    const room = L.slotSize - head;
    const slot = L.slotBase + i * L.slotSize;
    const p = slot + head;
    this.u8.set(frame.length > room ? frame.subarray(0, room) : frame, p);
    const before = offload?.before;
    if (before) this.u8.set(before.subarray(Math.max(0, before.length - head)), p - Math.min(before.length, head));
    const d = L.inDescBase + i * IN_DESC;
    this.dv.setUint16(d + I_OFF, head, true);
    this.dv.setUint16(d + I_LEN, Math.min(frame.length, 0xffff), true);
    this.dv.setUint16(d + I_PORT, port, true);
    this.dv.setUint16(d + I_FLAGS, offload?.flags ?? 0, true);
  }

  /**
   * The frames the last process() call handed to the host (assembly/pipeline/punt.ts:
   * ARP and ND for underlay.ip, for the neighbour cache), copies; `lost`: those
   * beyond the area since init.
   */
  puntCount(): number { return this.ex.puntCount.value; }

  /** Sources the last process() call gleaned (assembly/pipeline/glean.ts), how many. */
  learnCount(): number { return this.ex.learnCount.value; }

  /**
   * The last process() call's learn records, decoded (VN ids, port names,
   * MAC and IP text); for the gleaner (host/control/glean.ts). `lost`: those
   * beyond the area since init.
   */
  learned(): LearnRecord[] {
    const n = this.ex.learnCount.value;
    const base = this.ex.learnPtr();
    const out: LearnRecord[] = [];
    const KIND = ["", "mac", "ip", "ip", "seen"] as const;
    for (let i = 0; i < n; i++) {
      const r = base + i * 32;
      const vn = this.t.vnById[this.dv.getUint32(r, true)];
      const kind = KIND[this.u8[r + 6]];
      if (vn === undefined || !kind) continue;
      const m = this.dv.getBigUint64(r + 8, true);
      const mac = Array.from({ length: 6 }, (_, k) => Number((m >> BigInt(40 - 8 * k)) & 0xffn).toString(16).padStart(2, "0")).join(":");
      const rec: LearnRecord = { vn, port: this.portName(this.dv.getUint16(r + 4, true)), kind, mac };
      if (this.u8[r + 6] === 2) rec.ip = Array.from(this.u8.subarray(r + 16, r + 20)).join(".");
      if (this.u8[r + 6] === 3) {
        const w = Array.from({ length: 8 }, (_, k) => this.dv.getUint16(r + 16 + 2 * k, false).toString(16));
        rec.ip = normIp6(w.join(":"));
      }
      out.push(rec);
    }
    return out;
  }

  /** Called with every batch's learn records by run() (the offline tools' gleaner: `nvedge pcap`). */
  learnSink: ((recs: LearnRecord[]) => void) | undefined;

  punts(): { port: number; frame: Uint8Array }[] {
    const n = this.ex.puntCount.value;
    const base = this.ex.puntPtr();
    const out: { port: number; frame: Uint8Array }[] = [];
    // a record: u16 port, u16 frame length, the frame's first PUNT_REC - 4 bytes (assembly/pipeline/punt.ts)
    for (let i = 0; i < n; i++) {
      const r = base + i * PUNT_REC;
      const len = Math.min(this.dv.getUint16(r + 2, true), PUNT_REC - 4);
      out.push({ port: this.dv.getUint16(r, true), frame: this.u8.slice(r + 4, r + 4 + len) });
    }
    return out;
  }

  /** Output j as one contiguous frame (a copy). */
  output(j: number): { port: number; frame: Uint8Array; in: number; vn: number } {
    const L = this.layout;
    const d = L.outDescBase + j * OUT_DESC;
    const port = this.dv.getUint16(d + O_PORT, true) & ~OF_GSO; // OF_GSO: a whole super-frame, seen here as its segment 0's headers
    const hl = this.dv.getUint16(d + O_HDRLEN, true);
    const dp = this.dv.getUint32(d + O_DATA, true);
    const dl = this.dv.getUint16(d + O_DATALEN, true);
    const frame = new Uint8Array(hl + dl);
    const h = L.hdrBase + j * L.hdrSlot;
    frame.set(this.u8.subarray(h, h + hl), 0);
    frame.set(this.u8.subarray(dp, dp + dl), hl);
    return { port, frame, in: this.dv.getUint16(d + O_IN, true), vn: this.dv.getUint32(d + O_VN, true) };
  }

  /** Convenience for tools and tests (copies): every output of `frames` entering `port`. */
  run(port: string, frames: Uint8Array[]): { port: string; frame: Uint8Array; in: number }[] {
    const pi = this.t.ports.get(port);
    const out: { port: string; frame: Uint8Array; in: number }[] = [];
    let next = 0;
    while (next < frames.length) {
      const n = Math.min(this.layout.maxBatch, frames.length - next);
      for (let i = 0; i < n; i++) this.load(i, pi ?? 0xffff, frames[next + i]);
      const k = this.process(n);
      for (let j = 0; j < k; j++) {
        const o = this.output(j);
        out.push({ port: this.portName(o.port), frame: o.frame, in: next + o.in });
      }
      if (this.learnSink && this.learnCount() !== 0) this.learnSink(this.learned());
      next += this.consumed;
    }
    return out;
  }

  /**
   * Turns the data plane's fast paths (assembly/pipeline/fast.ts) off or back
   * on. Off, every frame takes the full path: the same outputs and counters,
   * more slowly. For tests that compare the two and for diagnosis.
   */
  fastPaths(on: boolean): void { this.ex.setFastPaths(on ? 1 : 0); }
  /** What port `idx`'s sender takes whole (GSO_CAP_TSO: a TCP super-frame with a TSO request; 0: none). assembly/pipeline/gso.ts. */
  portGso(idx: number, caps: number): void { this.ex.setPortGso(idx, caps); }
  /** TCP super-frames the data plane handed to a sender whole since start (assembly/pipeline/gso.ts). */
  get gsoWhole(): bigint { return this.ex.gsoWhole.value; }

  /** One frame through the pipeline with every decision recorded. */
  trace(port: string, frame: Uint8Array): { steps: string[]; outputs: { port: string; frame: Uint8Array }[]; drop?: string } {
    const before = this.traceBegin();
    let outputs;
    try { outputs = this.run(port, [frame]); } finally { this.ex.setTrace(0); }
    const r = this.traceEnd(port, frame.length, outputs, before);
    return { steps: r.steps, outputs: r.outputs, drop: r.drop };
  }

  /** Every drop reason's counter, by index (dropNames order). */
  dropsNow(): number[] {
    return readDrops(this.ex, this.dv, this.dropNames.length);
  }

  /**
   * Records the decisions of the frames processed from now on (the last one's
   * are kept) until traceEnd(); returns the drop counters to compare with.
   * trace() uses it around one run(); the packet I/O worker's live trace
   * (`nvedge trace --live`, `nvedge capture --drops`) around one process(1).
   */
  traceBegin(): number[] {
    const before = this.dropsNow();
    this.ex.setTrace(1);
    const base = this.ex.tracePtr();
    this.u8.fill(0, base, base + TRACE_REC);
    return before;
  }

  /** The recorded decisions of the frame since traceBegin(): steps, outputs, the drop reason, the VN id. */
  traceEnd(port: string, frameLen: number, outputs: { port: string; frame: Uint8Array }[], before: number[]): TraceResult {
    this.ex.setTrace(0);
    return readTrace(this.ex, this.dv, this.dropNames, this.t, port, frameLen, outputs, before, (idx) => this.l3.domainOfIdx(idx));
  }

  // ---------------------------------------------------------------- counters

  counters() {
    return readCounters(this.ex, this.dv, this.dropNames, this.t);
  }
}
