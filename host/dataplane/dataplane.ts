// The host side of the data plane: loads the WebAssembly module, keeps the
// bookkeeping the tables need (VN indices, remote NVEs, tunnels and their
// reference counts, flood-list blocks) and programs the tables with DpOps.
// Hot path: process(n), one call per batch over frames already in memory.
import { readFileSync } from "node:fs";
import type { DpOp, VnProfile } from "./ops.js";
import { parseMac, parseIp, ip4Value, unicastMacInto, macBytes, type Mac, type Ip } from "./addr.js";
import { adviseHugePages } from "./memory.js";
import { L3State } from "./l3.js";
import { wasmPath } from "../paths.js";

export class DataPlaneError extends Error {
  constructor(public index: number, public field: string, message: string) {
    super(`op ${index}${field ? ` (${field})` : ""}: ${message}`);
  }
}

interface Exports {
  memory: WebAssembly.Memory;
  consumed: WebAssembly.Global;
  init(mac: number, ip: number, tun: number, flood: number): void;
  process(n: number): number;
  [fn: string]: any;
}

export interface Layout {
  slotBase: number; slotSize: number; headroom: number; maxBatch: number;
  inDescBase: number; outDescBase: number; hdrBase: number; hdrSlot: number; maxOut: number;
  /** The in-desc flag bits (assembly/abi.ts IF_*), for a receiver that passes offload work on. */
  descFlags: { vnet: number; gsoSeg: number; gsoLast: number; segShift: number };
}

export interface CreateOptions {
  macLog2?: number; ipLog2?: number; tunLog2?: number; floodCap?: number; debug?: boolean;
  /**
   * Back the tables with transparent huge pages (madvise through the packet
   * I/O addon, Linux only): fewer TLB misses per lookup in tables far larger
   * than the TLB covers, at the cost of memory faulted in 2 MiB at a time.
   * On for `nvedge run` and the bench; a clear error when asked for and
   * impossible.
   */
  hugePages?: boolean;
  /**
   * core: the AssemblyScript module as it is (default); component: the same
   * core wrapped as a WebAssembly component (wit/dataplane.wit) and run through
   * jco's bindings (./component.ts). The same tables, frames and results.
   */
  loader?: "core" | "component";
  /** component only: each batch through jco's lifted export rather than the core function it lifts (./component.ts; for the bench). */
  liftedBatch?: boolean;
}

const ENCAP = { vxlan: 1, geneve: 2, nvgre: 3 } as const;
const VNF_PORTSEC = 1, VNF_ARPSUP = 2, VNF_DSCP_FIXED = 4;
const MK_KIND = 0xc0000000, MK_LOCAL = 0x40000000, MK_REMOTE = 0x80000000;

interface VnState {
  idx: number; vni: number; profile: VnProfile;
  flood: Set<number>; // remote indices
  floodOff: number; floodCap: number;
  locals: number; // (port, tag) pairs
}
interface RemoteState { idx: number; ip: Ip; refs: number }
interface TunnelState { t: number; vnIdx: number; r: number; refs: number }

const modules = new Map<string, WebAssembly.Module>();
function wasmModule(debug: boolean): WebAssembly.Module {
  const name = debug ? "dataplane.debug.wasm" : "dataplane.wasm";
  let m = modules.get(name);
  if (!m) {
    const path = wasmPath(name);
    let bytes: Buffer;
    try { bytes = readFileSync(path); } catch {
      throw new Error(`the data plane ${path} is missing: run npm run build`);
    }
    m = new WebAssembly.Module(new Uint8Array(bytes));
    modules.set(name, m);
  }
  return m;
}

export class DataPlane {
  readonly memory: WebAssembly.Memory;
  readonly layout: Layout;
  readonly dropNames: string[];
  consumed = 0;
  private ex: Exports;
  private hugeBytes = 0;
  private u8: Uint8Array;
  private dv: DataView;
  private ports = new Map<string, number>();
  private portNames: string[] = [];
  private underlayPort = -1;
  private underlayIs6 = false;
  private vns = new Map<number, VnState>();
  private vnById: (number | undefined)[] = []; // vn index -> vn id
  private freeVnIdx: number[] = [];
  private remotes = new Map<string, RemoteState>();
  private freeRemote: number[] = [];
  private nextRemote = 0;
  private tunnels = new Map<number, TunnelState>();
  private tunByIdx: (TunnelState | undefined)[] = [];
  private remoteByIdx: (RemoteState | undefined)[] = [];
  private freeTun: number[] = [];
  private nextTun = 0;
  private tags = new Map<number, number>(); // port << 12 | tag -> vn id
  private vnKeyOwner = new Map<string, number>(); // "encap:vni" -> vn id
  private portTagOf = new Map<string, number>(); // `${vnId}:${port}` -> tag
  private prefixes: { vnIdx: number; ip: Ip; mac: Mac }[] = [];
  private floodFree = new Map<number, number[]>(); // capacity -> offsets
  private floodNext = 0;
  private readonly scratch: number;
  // What validate() parsed, by op index, for applyOne to use without parsing
  // again (issue 4: a restart programs a million bindings in one apply): the
  // op's MAC as its top 16 and low 32 bits, an "ip" op's plain IPv4 address
  // as a number (-1: IPv6 or a prefix, parsed again on the slow path).
  private pHi = new Int32Array(0);
  private pLo = new Int32Array(0);
  private pIp4 = new Float64Array(0);
  /** local.bulk ops by index: their MACs (hi/lo) and plain IPv4 addresses (ip4, -1 otherwise), parsed by validate(). */
  private bulk = new Map<number, { hi: Int32Array; lo: Int32Array; ip4: Float64Array }>();
  private readonly maxRemotes: number;
  private readonly maxVns: number;
  private readonly maxPorts: number;
  private readonly tunCap: number;
  private readonly floodCap: number;
  private readonly l3: L3State;

  private constructor(ex: Exports) {
    this.ex = ex;
    this.memory = ex.memory;
    this.u8 = new Uint8Array(ex.memory.buffer);
    this.dv = new DataView(ex.memory.buffer);
    const c = (i: number) => ex.constants(i) as number;
    this.layout = {
      slotBase: ex.slotBasePtr(), slotSize: c(0), headroom: c(1), maxBatch: c(2),
      inDescBase: ex.inDescPtr(), outDescBase: ex.outDescPtr(), hdrBase: ex.hdrBasePtr(), hdrSlot: c(5), maxOut: c(6),
      descFlags: { vnet: c(13), gsoSeg: c(14), gsoLast: c(15), segShift: c(16) },
    };
    this.scratch = ex.scratchPtr();
    this.maxPorts = c(7);
    this.maxVns = c(8);
    this.maxRemotes = c(9);
    this.tunCap = ex.tunnelCapacity();
    this.floodCap = ex.floodPoolSize();
    const p = ex.dropNamesPtr() as number;
    const n = ex.dropNamesLen() as number;
    this.dropNames = String.fromCharCode(...new Uint16Array(ex.memory.buffer, p, n)).split(",");
    this.l3 = new L3State({
      ex, scratch: (b, at) => this.scratchWrite(b, at),
      allocVnIdx: () => { const i = this.freeVnIdx.pop() ?? this.vnById.length; this.vnById[i] = undefined; return i; },
      freeVnIdx: (i) => { this.freeVnIdx.push(i); },
      vnIdx: (id) => this.vns.get(id)?.idx,
      floodOf: (id) => [...(this.vns.get(id)?.flood ?? [])].map((r) => this.remoteByIdx[r]!.ip.text),
      acquireTunnel: (vnIdx, nve) => { const t = this.acquireTunnel(vnIdx, nve); return { t: t.t, r: t.r }; },
      releaseTunnel: (vnIdx, r) => this.releaseTunnel(this.tunnels.get(vnIdx * this.maxRemotes + r)),
      rebuildTunnels: (vnIdx) => { for (const t of this.tunnels.values()) if (t.vnIdx === vnIdx) ex.buildTunnel(t.t, t.vnIdx, t.r); },
      fail: (i, f, m) => { throw new DataPlaneError(i, f, m); },
    });
  }

  /** A new, independent data plane instance with its own memory and tables. */
  static async create(o: CreateOptions = {}): Promise<DataPlane> {
    let ex: Exports;
    if (o.loader === "component") {
      if (o.debug) throw new Error("the data plane component is built from the release module only: no debug build");
      ex = (await (await import("./component.js")).instantiateComponent({ liftedBatch: o.liftedBatch })) as Exports;
    } else {
      ex = (await WebAssembly.instantiate(wasmModule(!!o.debug), {})).exports as unknown as Exports;
    }
    ex.init(o.macLog2 ?? 21, o.ipLog2 ?? 21, o.tunLog2 ?? 16, o.floodCap ?? 1 << 20);
    // init() lays the tables out without touching them (assembly/state.ts
    // alloc): advised now, they are faulted in as huge pages as bindings land.
    const huge = o.hugePages ? adviseHugePages(ex.memory.buffer) : 0;
    const dp = new DataPlane(ex);
    dp.hugeBytes = huge;
    return dp;
  }

  portIndex(name: string): number { return this.ports.get(name) ?? -1; }
  portName(i: number): string { return this.portNames[i] ?? `#${i}`; }
  get portList(): string[] { return [...this.portNames]; }
  vnIndex(vnId: number): number { return this.vns.get(vnId)?.idx ?? -1; }
  vnId(idx: number): number | undefined { return this.vnById[idx]; }

  /** Bindings and table fill, for `show` and the bench's bytes per binding. */
  stats() {
    const e = this.ex;
    return {
      macs: e.macCount() as number, macCapacity: e.macCapacity() as number, macSlots: e.macSlots() as number,
      ips: e.ipCount() as number, ipCapacity: e.ipCapacity() as number, ipSlots: e.ipSlots() as number,
      macBytesPerSlot: 16, ipBytesPerSlot: 32,
      vns: this.vns.size, remotes: this.remotes.size, tunnels: this.tunnels.size,
      // frames forwarded by the fast paths (assembly/pipeline/fast.ts), the rest took the full path
      fastPathFrames: Number((e.fastFrames as WebAssembly.Global).value),
      // bytes of memory advised for transparent huge pages (CreateOptions.hugePages)
      hugePagesAdvised: this.hugeBytes,
    };
  }

  // ---------------------------------------------------------------- programming

  /**
   * Applies the ops in order, between two batches. Every op is checked
   * first (syntax, references, capacity) so a bad list applies nothing.
   */
  apply(ops: DpOp[]): void {
    if (this.pHi.length < ops.length) {
      this.pHi = new Int32Array(ops.length);
      this.pLo = new Int32Array(ops.length);
      this.pIp4 = new Float64Array(ops.length);
    }
    try {
      this.validate(ops);
      for (let i = 0; i < ops.length; i++) this.applyOne(ops[i], i);
      this.updateFanout();
    } finally {
      this.bulk.clear();
      // a restart's million ops need big arrays once; do not keep them
      if (this.pHi.length > 65536) {
        this.pHi = new Int32Array(0);
        this.pLo = new Int32Array(0);
        this.pIp4 = new Float64Array(0);
      }
    }
  }

  private validate(ops: DpOp[]): void {
    // The state as the list would leave it, as overlays on the live state
    // (nothing proportional to the tables is copied per apply()).
    const ports = new SetOverlay<string>(this.ports);
    const vns = new SetOverlay<number>(this.vns);
    // (encap:VNI) -> VN id, and each VN's key, as the list would leave them
    const keyOwner = new Map<string, number | null>();
    const keyOfVn = new Map<number, string | null>();
    const ownerOf = (key: string) => keyOwner.has(key) ? keyOwner.get(key)! : this.vnKeyOwner.get(key) ?? null;
    const keyOf = (vn: number) => {
      if (keyOfVn.has(vn)) return keyOfVn.get(vn)!;
      const v = this.vns.get(vn);
      return v ? `${v.profile.encap}:${v.vni}` : null;
    };
    let newMacs = 0, newIps = 0;
    // flood lists and remote NVEs as the list would leave them (limits are
    // checked before anything is applied)
    const floodOf = new Map<number, Set<string>>();
    const flood = (vn: number) => {
      let f = floodOf.get(vn);
      if (!f) {
        const v = this.vns.get(vn);
        f = new Set(v ? [...v.flood].map((r) => this.remoteByIdx[r]!.ip.text) : []);
        floodOf.set(vn, f);
      }
      return f;
    };
    const newRemotes = new Set<string>();
    const remoteRef = (i: number, nve: string) => {
      const t = parseIp(nve, false)!.text;
      if (!this.remotes.has(t)) newRemotes.add(t);
      if (this.remotes.size + newRemotes.size > this.maxRemotes) fail(i, "nve", `at most ${this.maxRemotes} remote NVEs`);
    };
    let ulIs6: boolean | undefined = this.underlayPort >= 0 ? this.underlayIs6 : undefined;
    // (port, tag) -> VN as the list would leave it, so a mac.local can be
    // checked against the tags that earlier ops of the same list map
    const deletedVns = new Set<number>();
    // (port|tag) -> VN (null: unmapped) changed by this list, over this.tags
    const tagOverlay = new Map<string, number | null>();
    const tagVn = (port: string, tag: number): number | null => {
      const k = `${port}|${tag}`;
      if (tagOverlay.has(k)) return tagOverlay.get(k)!;
      const pi = this.ports.get(port);
      return pi === undefined ? null : this.tags.get((pi << 12) | tag) ?? null;
    };
    // memo of vnOnPort: a restart's list has a mac.local per MAC (issue 4), so
    // it is worked out once per (VN, port), not once per op; tag changes clear it
    const onPort = new Map<string, boolean>();
    const vnOnPort = (vn: number, port: string) => {
      const mk = `${vn}|${port}`;
      let on = onPort.get(mk);
      if (on === undefined) {
        on = false;
        for (const [k, v] of tagOverlay) if (v === vn && k.startsWith(`${port}|`)) { on = true; break; }
        if (!on && !deletedVns.has(vn)) {
          const pi = this.ports.get(port);
          const live = pi === undefined ? undefined : this.portTagOf.get(`${vn}:${pi}`);
          on = live !== undefined && tagVn(port, live) === vn;
        }
        onPort.set(mk, on);
      }
      return on;
    };
    const fail = (i: number, f: string, m: string): never => { throw new DataPlaneError(i, f, m); };
    const needVn = (i: number, vn: unknown) => {
      if (!vns.has(vn as number)) fail(i, "vn", `unknown VN ${vn}`);
    };
    const needPort = (i: number, p: unknown) => {
      if (typeof p !== "string" || !ports.has(p)) fail(i, "port", `unknown port ${JSON.stringify(p)}`);
    };
    const { pHi, pLo, pIp4 } = this;
    const needMac = (i: number, m: unknown) => {
      if (!unicastMacInto(m as string, pHi, pLo, i)) fail(i, "mac", `not a unicast MAC: ${JSON.stringify(m)}`);
    };
    const needIp = (i: number, s: string) => {
      const v4 = ip4Value(s);
      pIp4[i] = v4;
      if (v4 < 0 && !parseIp(s)) fail(i, "ip", `not an IP address or prefix: ${JSON.stringify(s)}`);
    };
    const needRemoteIp = (i: number, s: unknown) => {
      const ip = parseIp(s as string, false);
      if (!ip) fail(i, "nve", `not an IP address: ${JSON.stringify(s)}`);
      if (ulIs6 === undefined) fail(i, "nve", "no underlay configured");
      if (ip!.is6 !== ulIs6) fail(i, "nve", `${s} is not of the underlay's address family`);
    };
    const l3check = this.l3.checker(ownerOf);
    ops.forEach((op, i) => {
      if (!op || typeof op !== "object") fail(i, "", "not an object");
      l3check(op, i); // the L3 service's ops and fields (./l3.ts)
      switch (op.op) {
        case "underlay": {
          if (typeof op.port !== "string" || !op.port) fail(i, "port", "missing");
          const ip = parseIp(op.ip, false);
          if (!ip) fail(i, "ip", `not an IP address: ${JSON.stringify(op.ip)}`);
          if (!parseMac(op.mac)) fail(i, "mac", `not a MAC: ${JSON.stringify(op.mac)}`);
          if (!parseMac(op.gatewayMac)) fail(i, "gatewayMac", `not a MAC: ${JSON.stringify(op.gatewayMac)}`);
          if (this.remotes.size && ip!.is6 !== this.underlayIs6) fail(i, "ip", "cannot change the underlay's address family while remotes exist");
          if (!ports.has(op.port) && ports.size >= this.maxPorts) fail(i, "port", "too many ports");
          ports.add(op.port);
          ulIs6 = ip!.is6;
          break;
        }
        case "port":
          if (typeof op.port !== "string" || !op.port) fail(i, "port", "missing");
          if (!ports.has(op.port) && ports.size >= this.maxPorts) fail(i, "port", `at most ${this.maxPorts} ports`);
          ports.add(op.port);
          break;
        case "vn": {
          if (!Number.isInteger(op.vn) || op.vn < 1 || op.vn > 0xffffff) fail(i, "vn", `VN id out of range: ${op.vn}`);
          if (!Number.isInteger(op.vni) || op.vni < 1 || op.vni > 0xffffff) fail(i, "vni", `VNI out of range: ${op.vni}`);
          const p = op.profile;
          if (!p || !(p.encap in ENCAP)) fail(i, "profile.encap", `unknown encapsulation ${JSON.stringify(p?.encap)}`);
          if (p.encap === "nvgre" && (op.vni <= 0xfff || op.vni === 0xffffff)) fail(i, "vni", `VSID ${op.vni} is reserved (RFC 7637 §3.2)`);
          if (!Number.isInteger(p.mtu) || p.mtu < 68 || p.mtu > 9000) fail(i, "profile.mtu", `MTU out of range: ${p.mtu}`);
          const key = `${p.encap}:${op.vni}`;
          const owner = ownerOf(key);
          if (owner !== null && owner !== op.vn) fail(i, "vni", `${p.encap} VNI ${op.vni} already used by VN ${owner}`);
          const old = keyOf(op.vn);
          if (old !== null) keyOwner.set(old, null);
          keyOwner.set(key, op.vn);
          keyOfVn.set(op.vn, key);
          if (!vns.has(op.vn) && vns.size >= this.maxVns) fail(i, "vn", `at most ${this.maxVns} VNs`);
          vns.add(op.vn);
          break;
        }
        case "vn.del":
          needVn(i, op.vn); vns.delete(op.vn);
          { const old = keyOf(op.vn); if (old !== null) keyOwner.set(old, null); keyOfVn.set(op.vn, null); }
          // seed §3.1: its tags go with it
          for (const [k, v] of tagOverlay) if (v === op.vn) tagOverlay.set(k, null);
          deletedVns.add(op.vn);
          onPort.clear();
          break;
        case "tag":
          needPort(i, op.port); needVn(i, op.vn);
          if (op.port === this.underlayPortName()) fail(i, "port", "the underlay port carries no tags");
          if (!Number.isInteger(op.tag) || op.tag < 1 || op.tag > 4094) fail(i, "tag", `VID out of range: ${op.tag}`);
          tagOverlay.set(`${op.port}|${op.tag}`, op.vn);
          onPort.clear();
          break;
        case "tag.del": needPort(i, op.port); tagOverlay.set(`${op.port}|${op.tag}`, null); onPort.clear(); break;
        case "mac.local":
          needVn(i, op.vn); needMac(i, op.mac); needPort(i, op.port);
          if (!vnOnPort(op.vn, op.port)) fail(i, "port", `VN ${op.vn} has no tag on port ${op.port}`);
          newMacs++;
          break;
        case "local.bulk": {
          needPort(i, op.port);
          const n = Array.isArray(op.mac) ? op.mac.length : -1;
          if (n < 0 || !Array.isArray(op.vn) || op.vn.length !== n || !Array.isArray(op.active) || op.active.length !== n ||
              !Array.isArray(op.ipStart) || op.ipStart.length !== n + 1 || op.ipStart[0] !== 0 || !Array.isArray(op.ips) || op.ipStart[n] !== op.ips.length)
            fail(i, "", "local.bulk: vn, mac, active (n entries each), ipStart (n + 1, from 0 to the length of ips) and ips do not line up");
          const b = { hi: new Int32Array(n), lo: new Int32Array(n), ip4: new Float64Array(op.ips.length) };
          let vnId = -1;
          for (let k = 0; k < n; k++) {
            if (op.vn[k] !== vnId) {
              vnId = op.vn[k];
              if (!vns.has(vnId)) fail(i, `vn[${k}]`, `unknown VN ${vnId}`);
              if (!vnOnPort(vnId, op.port)) fail(i, `vn[${k}]`, `VN ${vnId} has no tag on port ${op.port}`);
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
          this.bulk.set(i, b);
          newMacs += n;
          newIps += op.ips.length;
          break;
        }
        case "mac.remote": needVn(i, op.vn); needMac(i, op.mac); needRemoteIp(i, op.nve); remoteRef(i, op.nve); newMacs++; break;
        case "mac.del": needVn(i, op.vn); needMac(i, op.mac); break;
        case "ip": {
          needVn(i, op.vn); needMac(i, op.mac);
          needIp(i, op.ip);
          newIps++;
          break;
        }
        case "ip.del": needVn(i, op.vn); needIp(i, op.ip); break;
        case "flood.join": {
          needVn(i, op.vn); needRemoteIp(i, op.nve); remoteRef(i, op.nve);
          const f = flood(op.vn);
          f.add(parseIp(op.nve, false)!.text);
          if (f.size > 1024) fail(i, "nve", "flood lists hold at most 1024 remote NVEs");
          break;
        }
        case "flood.leave": needVn(i, op.vn); needRemoteIp(i, op.nve); flood(op.vn).delete(parseIp(op.nve, false)!.text); break;
        case "l3domain": case "l3domain.del": break; // checked by l3check
        default: fail(i, "op", `unknown op ${JSON.stringify((op as { op: unknown }).op)}`);
      }
    });
    const st = this.stats();
    if (st.macs + newMacs > st.macCapacity) fail(0, "mac", `MAC table full (${st.macCapacity} bindings)`);
    if (st.ips + newIps > st.ipCapacity) fail(0, "ip", `IP table full (${st.ipCapacity} bindings)`);
  }

  private underlayPortName(): string | undefined {
    return this.underlayPort >= 0 ? this.portNames[this.underlayPort] : undefined;
  }

  private check(rc: number, i: number, what: string): void {
    if (rc !== 0) throw new DataPlaneError(i, what, rc === 1 ? "table full" : "out of range");
  }

  private ensurePort(name: string): number {
    let p = this.ports.get(name);
    if (p === undefined) {
      p = this.portNames.length;
      this.ports.set(name, p);
      this.portNames.push(name);
    }
    return p;
  }

  private scratchWrite(bytes: Uint8Array, at = 0): void {
    this.u8.set(bytes, this.scratch + at);
  }

  private applyOne(op: DpOp, i: number): void {
    const ex = this.ex;
    this.l3.before(op);
    switch (op.op) {
      case "underlay": {
        const p = this.ensurePort(op.port);
        const ip = parseIp(op.ip, false)!;
        const s = new Uint8Array(32);
        const m = parseMac(op.mac)!, g = parseMac(op.gatewayMac)!;
        s.set(macBytes(m), 0); s.set(macBytes(g), 8); s.set(ip.bytes, 16);
        this.scratchWrite(s);
        this.check(ex.setPort(p, 2), i, "port");
        this.check(ex.setUnderlay(p, ip.is6 ? 1 : 0, op.udpPort ?? 4789, op.genevePort ?? 6081), i, "underlay");
        this.underlayPort = p;
        this.underlayIs6 = ip.is6;
        for (const t of this.tunnels.values()) ex.buildTunnel(t.t, t.vnIdx, t.r);
        break;
      }
      case "port": {
        const p = this.ensurePort(op.port);
        if (p !== this.underlayPort) this.check(ex.setPort(p, 1), i, "port");
        break;
      }
      case "vn": {
        const p = op.profile;
        const flags = (p.portSecurity ? VNF_PORTSEC : 0) | (p.arpSuppress ? VNF_ARPSUP : 0) |
          (p.qos?.dscp !== undefined ? VNF_DSCP_FIXED : 0);
        let v = this.vns.get(op.vn);
        if (!v) {
          const idx = this.freeVnIdx.pop() ?? this.vnById.length;
          v = { idx, vni: op.vni, profile: p, flood: new Set(), floodOff: 0, floodCap: 0, locals: 0 };
          this.vns.set(op.vn, v);
          this.vnById[idx] = op.vn;
        }
        if (this.vnKeyOwner.get(`${v.profile.encap}:${v.vni}`) === op.vn) this.vnKeyOwner.delete(`${v.profile.encap}:${v.vni}`);
        v.vni = op.vni;
        v.profile = { ...p };
        this.vnKeyOwner.set(`${p.encap}:${op.vni}`, op.vn);
        this.check(ex.setVn(v.idx, op.vni, ENCAP[p.encap], p.mtu, flags, p.qos?.dscp ?? 0), i, "vn");
        // seed §4.5: a profile change reaches the data plane at once; the
        // prebuilt headers of this VN follow it
        for (const t of this.tunnels.values()) if (t.vnIdx === v.idx) ex.buildTunnel(t.t, t.vnIdx, t.r);
        break;
      }
      case "vn.del": {
        const v = this.vns.get(op.vn)!;
        // seed §3.1: deleting an entity deletes everything it contains
        for (const [k, id] of [...this.tags]) if (id === op.vn) this.unmapTag(k >> 12, k & 0xfff);
        ex.setFlood(v.idx, 0, 0);
        ex.purgeVn(v.idx);
        for (const [key, t] of [...this.tunnels]) if (t.vnIdx === v.idx) {
          ex.setVtep(v.idx, t.r, 0);
          this.tunnels.delete(key);
          this.tunByIdx[t.t] = undefined;
          this.freeTun.push(t.t);
          this.releaseRemote(t.r);
        }
        this.floodRelease(v);
        this.prefixes = this.prefixes.filter((x) => x.vnIdx !== v.idx);
        this.writePrefixes();
        ex.delVn(v.idx);
        this.vns.delete(op.vn);
        this.vnKeyOwner.delete(`${v.profile.encap}:${v.vni}`);
        this.vnById[v.idx] = undefined;
        this.freeVnIdx.push(v.idx);
        for (const k of [...this.portTagOf.keys()]) if (k.startsWith(`${op.vn}:`)) this.portTagOf.delete(k);
        break;
      }
      case "tag": {
        const port = this.ports.get(op.port)!;
        const v = this.vns.get(op.vn)!;
        const key = (port << 12) | op.tag;
        const old = this.tags.get(key);
        if (old === op.vn) break;
        if (old !== undefined) this.unmapTag(port, op.tag);
        this.check(ex.setTag(port, op.tag, v.idx + 1), i, "tag");
        v.locals++;
        this.tags.set(key, op.vn);
        this.portTagOf.set(`${op.vn}:${port}`, op.tag);
        break;
      }
      case "tag.del": {
        const port = this.ports.get(op.port)!;
        if (this.tags.has((port << 12) | op.tag)) this.unmapTag(port, op.tag);
        break;
      }
      case "mac.local": {
        const v = this.vns.get(op.vn)!;
        const port = this.ports.get(op.port)!;
        const tag = this.portTagOf.get(`${op.vn}:${port}`);
        if (tag === undefined) throw new DataPlaneError(i, "port", `VN ${op.vn} has no tag on port ${op.port}`);
        const hi = this.pHi[i], lo = this.pLo[i] >>> 0;
        const prev = ex.getMac(v.idx, hi, lo) >>> 0;
        this.check(ex.setMacLocal(v.idx, hi, lo, port, tag, op.active ? 1 : 0), i, "mac");
        this.releaseMacTarget(prev);
        break;
      }
      case "mac.remote": {
        const v = this.vns.get(op.vn)!;
        const hi = this.pHi[i], lo = this.pLo[i] >>> 0;
        const t = this.acquireTunnel(v.idx, op.nve);
        const prev = ex.getMac(v.idx, hi, lo) >>> 0;
        this.check(ex.setMacRemote(v.idx, hi, lo, t.t), i, "mac");
        this.releaseMacTarget(prev);
        break;
      }
      case "mac.del": {
        const v = this.vns.get(op.vn)!;
        const m = parseMac(op.mac)!;
        const prev = ex.getMac(v.idx, m.hi, m.lo) >>> 0;
        ex.delMac(v.idx, m.hi, m.lo);
        this.releaseMacTarget(prev);
        break;
      }
      case "ip": case "ip.del": {
        const v = this.vns.get(op.vn)!;
        this.ipOp(op.op === "ip", v, op.ip, this.pIp4[i], this.pHi[i], this.pLo[i], op.op === "ip" ? op.mac : "", i);
        break;
      }
      case "local.bulk": {
        const b = this.bulk.get(i)!;
        const port = this.ports.get(op.port)!;
        const n = op.mac.length;
        // as n mac.local ops then the ip ops (ops.ts), without an object per binding
        let vnId = -1, v: VnState | undefined, tag: number | undefined;
        for (let k = 0; k < n; k++) {
          if (op.vn[k] !== vnId) {
            vnId = op.vn[k];
            v = this.vns.get(vnId)!;
            tag = this.portTagOf.get(`${vnId}:${port}`);
          }
          if (tag === undefined) throw new DataPlaneError(i, `vn[${k}]`, `VN ${vnId} has no tag on port ${op.port}`);
          const prev = ex.getMac(v!.idx, b.hi[k], b.lo[k]) >>> 0;
          this.check(ex.setMacLocal(v!.idx, b.hi[k], b.lo[k], port, tag, op.active[k] ? 1 : 0), i, "mac");
          this.releaseMacTarget(prev);
        }
        vnId = -1;
        for (let k = 0; k < n; k++) {
          if (op.vn[k] !== vnId) v = this.vns.get((vnId = op.vn[k]))!;
          for (let j = op.ipStart[k], e = op.ipStart[k + 1]; j < e; j++) this.ipOp(true, v!, op.ips[j], b.ip4[j], b.hi[k], b.lo[k], op.mac[k], i);
        }
        break;
      }
      case "flood.join": {
        const v = this.vns.get(op.vn)!;
        const r = this.remotes.get(parseIp(op.nve, false)!.text);
        if (r && v.flood.has(r.idx)) break;
        const t = this.acquireTunnel(v.idx, op.nve);
        v.flood.add(t.r);
        ex.setVtep(v.idx, t.r, 1);
        this.writeFlood(v);
        break;
      }
      case "flood.leave": {
        const v = this.vns.get(op.vn)!;
        const r = this.remotes.get(parseIp(op.nve, false)!.text);
        if (!r || !v.flood.has(r.idx)) break;
        v.flood.delete(r.idx);
        ex.setVtep(v.idx, r.idx, 0);
        this.writeFlood(v);
        this.releaseTunnel(this.tunnels.get(v.idx * this.maxRemotes + r.idx)!);
        break;
      }
    }
    this.l3.after(op);
  }

  /**
   * An "ip" (add) or "ip.del" op. v4: the plain IPv4 address validate() parsed
   * (-1: IPv6 or a prefix, parsed here); hi/lo: the MAC validate() parsed.
   */
  private ipOp(add: boolean, v: VnState, text: string, v4: number, hi: number, lo: number, macText: string, i: number): void {
    const ex = this.ex;
    if (v4 >= 0) {
      // straight into the scratch area in network order: no allocation (issue 4)
      this.dv.setUint32(this.scratch, v4, false);
      if (add) this.check(ex.setIp(v.idx, 0, hi, lo >>> 0), i, "ip");
      else ex.delIp(v.idx, 0);
      return;
    }
    const ip = parseIp(text)!;
    const isFull = ip.prefix === null || ip.prefix === (ip.is6 ? 128 : 32);
    if (isFull) {
      this.scratchWrite(ip.bytes);
      if (add) this.check(ex.setIp(v.idx, ip.is6 ? 1 : 0, hi, lo >>> 0), i, "ip");
      else ex.delIp(v.idx, ip.is6 ? 1 : 0);
    } else {
      const same = (x: { vnIdx: number; ip: Ip }) => x.vnIdx === v.idx && x.ip.is6 === ip.is6 &&
        x.ip.prefix === ip.prefix && x.ip.bytes.every((b, j) => b === ip.bytes[j]);
      this.prefixes = this.prefixes.filter((x) => !same(x));
      if (add) {
        if (this.prefixes.length >= 1024) throw new DataPlaneError(i, "ip", "at most 1024 prefix bindings");
        this.prefixes.push({ vnIdx: v.idx, ip, mac: parseMac(macText)! });
      }
      this.writePrefixes();
    }
  }

  private unmapTag(port: number, tag: number): void {
    const key = (port << 12) | tag;
    const vnId = this.tags.get(key);
    if (vnId === undefined) return;
    this.ex.setTag(port, tag, 0);
    this.tags.delete(key);
    const v = this.vns.get(vnId);
    if (v) v.locals--;
    if (this.portTagOf.get(`${vnId}:${port}`) === tag) this.portTagOf.delete(`${vnId}:${port}`);
  }

  private acquireRemote(ipText: string): RemoteState {
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
    }
    r.refs++;
    return r;
  }

  private releaseRemote(idx: number): void {
    const r = this.remoteByIdx[idx];
    if (!r || --r.refs > 0) return;
    this.ex.delRemote(idx, r.ip.is6 ? 1 : 0);
    this.remotes.delete(r.ip.text);
    this.remoteByIdx[idx] = undefined;
    this.freeRemote.push(idx);
  }

  private acquireTunnel(vnIdx: number, nve: string): TunnelState {
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

  private releaseTunnel(t: TunnelState | undefined): void {
    if (!t || --t.refs > 0) return;
    this.tunnels.delete(t.vnIdx * this.maxRemotes + t.r);
    this.tunByIdx[t.t] = undefined;
    this.freeTun.push(t.t);
    this.releaseRemote(t.r);
  }

  /** A MAC entry was overwritten or removed: drop its hold on a tunnel. */
  private releaseMacTarget(prev: number): void {
    if (((prev & MK_KIND) >>> 0) !== MK_REMOTE) return;
    this.releaseTunnel(this.tunByIdx[prev & 0x00ffffff]);
  }

  private floodAlloc(cap: number): number {
    const free = this.floodFree.get(cap);
    if (free?.length) return free.pop()!;
    if (this.floodNext + cap > this.floodCap) throw new Error("flood-list pool exhausted");
    const off = this.floodNext;
    this.floodNext += cap;
    return off;
  }

  private floodRelease(v: VnState): void {
    if (!v.floodCap) return;
    const l = this.floodFree.get(v.floodCap) ?? [];
    l.push(v.floodOff);
    this.floodFree.set(v.floodCap, l);
    v.floodCap = 0;
  }

  /** Writes the VN's flood list into a fresh block, then flips the VN to it. */
  private writeFlood(v: VnState): void {
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

  private writePrefixes(): void {
    this.prefixes.forEach((x, j) => {
      this.scratchWrite(x.ip.bytes);
      this.ex.setPrefix(j, x.vnIdx, x.ip.is6 ? 1 : 0, x.ip.prefix, x.mac.hi, x.mac.lo);
    });
    this.ex.setPrefixCount(this.prefixes.length);
  }

  private updateFanout(): void {
    let worst = 1;
    for (const v of this.vns.values()) worst = Math.max(worst, v.flood.size + v.locals + 1);
    this.ex.setWorstFanout(worst);
  }

  // ---------------------------------------------------------------- frames

  /** Hot path: handles in-desc[0..n), returns the output count; sets `consumed`. */
  process(n: number): number {
    const out = this.ex.process(n);
    this.consumed = this.ex.consumed.value as number;
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
    const d = L.inDescBase + i * 8;
    this.dv.setUint16(d, head, true);
    this.dv.setUint16(d + 2, Math.min(frame.length, 0xffff), true);
    this.dv.setUint16(d + 4, port, true);
    this.dv.setUint16(d + 6, offload?.flags ?? 0, true);
  }

  /**
   * The frames the last process() call handed to the host (assembly/pipeline/punt.ts:
   * ARP and ND for underlay.ip, for the neighbour cache), copies; `lost`: those
   * beyond the area since init.
   */
  puntCount(): number { return this.ex.puntCount.value as number; }

  punts(): { port: number; frame: Uint8Array }[] {
    const n = this.ex.puntCount.value as number;
    const base = this.ex.puntPtr() as number;
    const out: { port: number; frame: Uint8Array }[] = [];
    for (let i = 0; i < n; i++) {
      const r = base + i * 128;
      const len = Math.min(this.dv.getUint16(r + 2, true), 124);
      out.push({ port: this.dv.getUint16(r, true), frame: this.u8.slice(r + 4, r + 4 + len) });
    }
    return out;
  }

  /** Output j as one contiguous frame (a copy). */
  output(j: number): { port: number; frame: Uint8Array; in: number; vn: number } {
    const L = this.layout;
    const d = L.outDescBase + j * 16;
    const port = this.dv.getUint16(d, true);
    const hl = this.dv.getUint16(d + 2, true);
    const dp = this.dv.getUint32(d + 4, true);
    const dl = this.dv.getUint16(d + 8, true);
    const frame = new Uint8Array(hl + dl);
    const h = L.hdrBase + j * L.hdrSlot;
    frame.set(this.u8.subarray(h, h + hl), 0);
    frame.set(this.u8.subarray(dp, dp + dl), hl);
    return { port, frame, in: this.dv.getUint16(d + 10, true), vn: this.dv.getUint32(d + 12, true) };
  }

  /** Convenience for tools and tests (copies): every output of `frames` entering `port`. */
  run(port: string, frames: Uint8Array[]): { port: string; frame: Uint8Array; in: number }[] {
    const pi = this.ports.get(port);
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
    const dp = this.ex.dropCtrPtr() as number;
    return this.dropNames.map((_, i) => Number(this.dv.getBigUint64(dp + i * 8, true)));
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
    this.u8.fill(0, base, base + 32);
    return before;
  }

  /** The recorded decisions of the frame since traceBegin(): steps, outputs, the drop reason, the VN id. */
  traceEnd(port: string, frameLen: number, outputs: { port: string; frame: Uint8Array }[], before: number[]):
    { steps: string[]; outputs: { port: string; frame: Uint8Array }[]; drop?: string; vn?: number } {
    this.ex.setTrace(0);
    const base = this.ex.tracePtr();
    const f = (k: number) => this.dv.getUint32(base + k, true);
    const after = this.dropsNow();
    const di = after.findIndex((n, i) => n !== before[i]);
    const drop = di >= 0 ? this.dropNames[di] : undefined;
    const steps: string[] = [];
    const pi = this.ports.get(port);
    steps.push(`port ${port}: ${pi === undefined ? "unknown" : pi === this.underlayPort ? "underlay" : "access"}, ${frameLen} bytes`);
    const vni = f(8);
    if (vni) steps.push(`vni ${vni}`);
    const vnIdx = f(4);
    if (vnIdx) {
      const id = this.vnById[vnIdx - 1];
      const v = id !== undefined ? this.vns.get(id) : undefined;
      const dom = id === undefined ? this.l3.domainOfIdx(vnIdx - 1) : undefined; // a domain's L3 VNI (./l3.ts)
      steps.push(dom ? `l3domain ${dom.id} (L3 VNI ${dom.vni})` : `vn ${id} (vni ${v?.vni}, ${v?.profile.encap}, mtu ${v?.profile.mtu})`);
    }
    const src = f(28) >>> 0;
    if (src && (src & MK_KIND) >>> 0 === MK_LOCAL) steps.push(`source: local VNIC on ${this.portName((src >> 16) & 0x3f)}${src & 0x20000000 ? "" : " (inactive)"}`);
    const lk = ["", "local", "remote", "broadcast/multicast", "unknown unicast", "answered locally (ARP/ND suppression)"][f(12)];
    if (lk) {
      const dv = f(24) >>> 0;
      let detail = "";
      if ((dv & MK_KIND) >>> 0 === MK_LOCAL) detail = ` -> port ${this.portName((dv >> 16) & 0x3f)} tag ${dv & 0xfff}`;
      if ((dv & MK_KIND) >>> 0 === MK_REMOTE) {
        const t = this.tunByIdx[dv & 0xffffff];
        const r = t && this.remoteByIdx[t.r];
        detail = ` -> NVE ${r?.ip.text ?? "?"}`;
      }
      steps.push(`lookup: ${lk}${detail}`);
    }
    const ac = ["", "hairpin (re-tag to the local port)", "encapsulate", "flood", "decapsulate", "reply", "route",
      "ICMP time exceeded from the gateway"][f(16)];
    if (ac) steps.push(`action: ${ac}`);
    for (const o of outputs) steps.push(`out ${o.port}: ${o.frame.length} bytes`);
    if (drop) steps.push(`drop: ${drop}`);
    const vn = vnIdx ? this.vnById[vnIdx - 1] : undefined;
    return { steps, outputs: outputs.map(({ port, frame }) => ({ port, frame })), drop, vn };
  }

  // ---------------------------------------------------------------- counters

  counters() {
    const g = this.ex.globalCtrPtr() as number;
    const rd = (p: number) => Number(this.dv.getBigUint64(p, true));
    const drops: Record<string, number> = {};
    const dp = this.ex.dropCtrPtr() as number;
    this.dropNames.forEach((n, i) => { drops[n] = rd(dp + i * 8); });
    const ports: Record<string, { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: number }> = {};
    const pp = this.ex.portCtrPtr() as number;
    this.portNames.forEach((n, i) => {
      const b = pp + i * 64;
      ports[n] = { rxFrames: rd(b), rxBytes: rd(b + 8), txFrames: rd(b + 16), txBytes: rd(b + 24), drops: rd(b + 32) };
    });
    const vns: Record<string, { rxFrames: number; txFrames: number; encap: number; decap: number; flood: number; drops: number }> = {};
    const vp = this.ex.vnCtrPtr() as number;
    for (const [id, v] of this.vns) {
      const b = vp + v.idx * 64;
      vns[String(id)] = { rxFrames: rd(b), txFrames: rd(b + 8), encap: rd(b + 16), decap: rd(b + 24), flood: rd(b + 32), drops: rd(b + 40) };
    }
    return { frames: { rx: rd(g), forwarded: rd(g + 8), outputs: rd(g + 16), dropped: rd(g + 24) }, drops, ports, vns };
  }
}

/** A set as an op list would leave it: the live keys plus the list's additions, minus its removals. */
class SetOverlay<K> {
  private added = new Set<K>();
  private removed = new Set<K>();
  constructor(private base: { has(k: K): boolean; readonly size: number }) {}
  has(k: K): boolean { return this.added.has(k) || (!this.removed.has(k) && this.base.has(k)); }
  add(k: K): void { this.removed.delete(k); if (!this.base.has(k)) this.added.add(k); }
  delete(k: K): void { this.added.delete(k); if (this.base.has(k)) this.removed.add(k); }
  get size(): number { return this.base.size + this.added.size - this.removed.size; }
}
