// The host side of the L3 service (seed §3.1.2; PROTOCOL.md §5 `service:
// "l3"`, §6 `l3domain` and the `vtep` record's `routerMac`): the bookkeeping
// behind assembly/tables/l3.ts. DataPlane (./dataplane.ts) calls it from
// three places only: validate (checkOp), before an op (before) and after it
// (after).
//   - A routing domain (op `l3domain`) gets a domain index and an internal VN
//     index whose VNI is the domain's L3 VNI (VXLAN, as EVPN type-5 uses),
//     so decapsulation and the prebuilt outer headers work as for any VN.
//   - A routed VN's gateway MAC goes into the MAC table (MK_ROUTER) and its
//     gateway IPs into the IP table as bindings of that MAC (ARP/ND answers).
//   - Each remote NVE that serves a routed VN and published a router MAC gets
//     one tunnel per domain carrying the L3 VNI (reference-counted by the
//     (VN, NVE) flood memberships that need it), with its router MAC.
import type { DpOp, VnProfile } from "./ops.js";
import { parseMac, parseIp, isUnicastMac, type Mac, type Ip } from "../domain/addr.js";

/** What the L3 bookkeeping needs from DataPlane (its private state, passed as closures). */
export interface L3Host {
  ex: Record<string, any>;
  /** Writes bytes into the scratch area at `at`. */
  scratch(bytes: Uint8Array, at: number): void;
  allocVnIdx(): number;
  freeVnIdx(idx: number): void;
  vnIdx(vnId: number): number | undefined;
  /** The remote NVEs (underlay IP text) on VN vnId's flood list. */
  floodOf(vnId: number): string[];
  acquireTunnel(vnIdx: number, nve: string): { t: number; r: number };
  releaseTunnel(vnIdx: number, r: number): void;
  rebuildTunnels(vnIdx: number): void;
  fail(i: number, field: string, message: string): never;
}

/** A gateway entry "10.1.0.1/24": the gateway's address and the subnet it is a host of. */
export interface GatewayIp { addr: Ip; prefix: number }

/**
 * Parses a `gateway.ips` entry (PROTOCOL.md §5: the VN's subnet, the gateway
 * address as host part). Returns the address and prefix length, or why not:
 * no prefix length, or an address that is not a host of its prefix (the
 * subnet's own address, or IPv4's broadcast address).
 */
export function parseGatewayIp(s: unknown): GatewayIp | string {
  if (typeof s !== "string") return `not a string: ${JSON.stringify(s)}`;
  const slash = s.indexOf("/");
  if (slash < 0) return `${s} has no prefix length: the gateway is written as its address in the VN's subnet, e.g. 10.0.0.1/24`;
  const addr = parseIp(s.slice(0, slash), false);
  const p = s.slice(slash + 1);
  if (!addr || !/^\d{1,3}$/.test(p) || Number(p) > (addr.is6 ? 128 : 32)) return `not an address with a prefix length: ${s}`;
  const prefix = Number(p);
  const bits = addr.is6 ? 128 : 32;
  let hostZero = true, hostOnes = true; // the bits after the prefix
  for (let b = prefix; b < bits; b++) {
    const on = (addr.bytes[b >> 3] & (0x80 >> (b & 7))) !== 0;
    if (on) hostZero = false; else hostOnes = false;
  }
  if (prefix < bits - 1 && hostZero) return `${s} is outside the VN's prefix: it is the subnet's own address, not a host of it`;
  if (!addr.is6 && prefix < 31 && hostOnes) return `${s} is outside the VN's prefix: it is the subnet's broadcast address, not a host of it`;
  return { addr, prefix };
}

/**
 * The L3 part of a VN profile, checked: null for an L2 VN, else the domain,
 * the gateway MAC and addresses; or [key, message] naming what is wrong.
 */
export function l3OfProfile(p: VnProfile): { dom: number; mac: Mac; ips: GatewayIp[] } | null | [string, string] {
  if (p.service !== "l3") {
    if (p.gateway !== undefined) return ["profile.gateway", "only a VN with service \"l3\" has a gateway"];
    if (p.l3domain !== undefined) return ["profile.l3domain", "only a VN with service \"l3\" belongs to an l3domain"];
    return null;
  }
  if (p.l3domain === undefined || !Number.isInteger(p.l3domain)) return ["profile.l3domain", "a VN with service \"l3\" names its l3domain"];
  const g = p.gateway;
  if (!g || typeof g !== "object") return ["profile.gateway", "a VN with service \"l3\" has a gateway {ips, mac}"];
  const mac = parseMac(g.mac);
  if (!mac || !isUnicastMac(mac)) return ["profile.gateway.mac", `not a unicast MAC: ${JSON.stringify(g.mac)}`];
  if (!Array.isArray(g.ips) || g.ips.length === 0) return ["profile.gateway.ips", "at least one gateway address (e.g. 10.0.0.1/24)"];
  const ips: GatewayIp[] = [];
  for (let k = 0; k < g.ips.length; k++) {
    const r = parseGatewayIp(g.ips[k]);
    if (typeof r === "string") return [`profile.gateway.ips.${k}`, r];
    ips.push(r);
  }
  return { dom: p.l3domain, mac, ips };
}

interface Domain { id: number; d: number; vni: number; routerMac: Mac; vnIdx: number; vns: Set<number> }
interface RoutedVn { dom: number; mac: Mac; ips: GatewayIp[] }
interface L3Tun { t: number; r: number; nve: string; refs: number }

export const MAX_DOMAINS = 1024;
const DOM_MAX_VNS = 120;

/**
 * The ops L3State.checker's switch looks at (it passes every other op as is):
 * validate() makes the checker at the first of them in a list, so a list
 * without one (an attach's) makes none (issue 15). Keep it with the switch.
 */
export const L3_CHECKED_OPS: ReadonlySet<string> = new Set<DpOp["op"]>(["l3domain", "l3domain.del", "vn", "flood.join"]);

export class L3State {
  private domains = new Map<number, Domain>();
  private freeD: number[] = [];
  private nextD = 0;
  private routed = new Map<number, RoutedVn>(); // VN id -> what is programmed
  private routerMacs = new Map<string, Mac>(); // remote NVE (IP text) -> its router MAC
  private links = new Map<number, Map<string, number>>(); // VN id -> NVE -> domain id it holds a tunnel of
  private tuns = new Map<string, L3Tun>(); // `${domain id}|${nve}`

  constructor(private host: L3Host) {}

  /** The domain an internal VN index carries the L3 VNI of (for trace). */
  domainOfIdx(idx: number): { id: number; vni: number } | undefined {
    for (const d of this.domains.values()) if (d.vnIdx === idx) return { id: d.id, vni: d.vni };
    return undefined;
  }

  /**
   * A checker for one op list (DataPlane.validate): domains as the list
   * would leave them, so an `l3domain` op may come before the VNs in it.
   * `vniOwner(key)` is the VN id owning "encap:vni" as the list leaves it.
   */
  checker(vniOwner: (key: string) => number | null) {
    const doms = new Map<number, number | null>(); // id -> L3 VNI (null: deleted)
    const vniOf = (id: number) => doms.has(id) ? doms.get(id)! : this.domains.get(id)?.vni ?? null;
    const domainWithVni = (vni: number) => {
      for (const [id, v] of doms) if (v === vni) return id;
      for (const d of this.domains.values()) if (d.vni === vni && !doms.has(d.id)) return d.id;
      return null;
    };
    let count = this.domains.size;
    const fail = this.host.fail;
    return (op: DpOp, i: number): void => {
      switch (op.op) {
        case "l3domain": {
          if (!Number.isInteger(op.id) || op.id < 1 || op.id > 0xffffff) fail(i, "id", `l3domain id out of range: ${op.id}`);
          if (!Number.isInteger(op.vni) || op.vni < 1 || op.vni > 0xffffff) fail(i, "vni", `L3 VNI out of range: ${op.vni}`);
          const m = parseMac(op.routerMac);
          if (!m || !isUnicastMac(m)) fail(i, "routerMac", `not a unicast MAC: ${JSON.stringify(op.routerMac)}`);
          const owner = vniOwner(`vxlan:${op.vni}`);
          if (owner !== null) fail(i, "vni", `L3 VNI ${op.vni} of l3domain ${op.id} is the VNI of VN ${owner}`);
          const other = domainWithVni(op.vni);
          if (other !== null && other !== op.id) fail(i, "vni", `L3 VNI ${op.vni} is already l3domain ${other}'s`);
          if (vniOf(op.id) === null && ++count > MAX_DOMAINS) fail(i, "id", `at most ${MAX_DOMAINS} l3domains`);
          doms.set(op.id, op.vni);
          break;
        }
        case "l3domain.del":
          if (vniOf(op.id) === null) fail(i, "id", `unknown l3domain ${op.id}`);
          doms.set(op.id, null);
          count--;
          break;
        case "vn": {
          const l3 = l3OfProfile(op.profile);
          if (Array.isArray(l3)) return fail(i, l3[0], l3[1]);
          // A VN whose domain is not declared yet is taken and routed once it
          // is (setDomain): the IMA publishes VNs and domains in any order, and
          // a restart programs the VNs it cached before the IMA answers. The
          // configuration (host/config/l3.ts) and the IMA's catalog refuse an
          // undeclared domain with an error naming the key.
          if (op.profile.encap === "vxlan") {
            const d = domainWithVni(op.vni);
            if (d !== null) fail(i, "vni", `VNI ${op.vni} of VN ${op.vn} is the L3 VNI of l3domain ${d}`);
          }
          break;
        }
        case "flood.join":
          if (op.routerMac !== undefined) {
            const m = parseMac(op.routerMac);
            if (!m || !isUnicastMac(m)) fail(i, "routerMac", `not a unicast MAC: ${JSON.stringify(op.routerMac)}`);
          }
          break;
        default:
      }
    };
  }

  /** Before op `op` is applied: a VN about to be deleted leaves its domain. */
  before(op: DpOp): void {
    if (op.op === "vn.del") this.unroute(op.vn);
    if (op.op === "l3domain.del") this.delDomain(op.id);
  }

  /** After op `op` was applied. */
  after(op: DpOp): void {
    switch (op.op) {
      case "l3domain": this.setDomain(op.id, op.vni, parseMac(op.routerMac)!); break;
      case "vn": this.route(op.vn, op.profile); break;
      case "flood.join":
        if (op.routerMac !== undefined) this.setRouterMac(op.nve, parseMac(op.routerMac)!);
        this.sync(op.vn);
        break;
      case "flood.leave": this.sync(op.vn); break;
      default:
    }
  }

  private setDomain(id: number, vni: number, mac: Mac): void {
    const ex = this.host.ex;
    let dom = this.domains.get(id);
    if (!dom) {
      const d = this.freeD.pop() ?? this.nextD++;
      dom = { id, d, vni, routerMac: mac, vnIdx: this.host.allocVnIdx(), vns: new Set() };
      this.domains.set(id, dom);
    }
    dom.vni = vni;
    dom.routerMac = mac;
    // the L3 VNI's internal VN: VXLAN, no flags; its MTU bounds nothing (the
    // routed packet is checked against its destination VN's MTU)
    ok(ex.setVn(dom.vnIdx, vni, 1, 9000, 0, 0), "l3domain vn");
    ok(ex.setL3Domain(dom.d, dom.vnIdx, mac.hi, mac.lo >>> 0), "l3domain");
    this.host.rebuildTunnels(dom.vnIdx);
    // the routed VNs that wait for this domain (declared after them)
    for (const [vnId, r] of this.routed) if (r.dom === id && !dom.vns.has(vnId)) this.program(vnId, r);
  }

  private delDomain(id: number): void {
    const dom = this.domains.get(id);
    if (!dom) return;
    for (const vnId of [...dom.vns]) this.unprogram(vnId);
    const ex = this.host.ex;
    ex.delL3Domain(dom.d);
    ex.delVn(dom.vnIdx);
    this.host.freeVnIdx(dom.vnIdx);
    this.domains.delete(id);
    this.freeD.push(dom.d);
  }

  /** VN vnId's profile was (re)applied. */
  private route(vnId: number, p: VnProfile): void {
    const l3 = l3OfProfile(p);
    const old = this.routed.get(vnId);
    if (old) this.unprogram(vnId);
    this.routed.delete(vnId);
    if (!l3 || Array.isArray(l3)) { this.sync(vnId); return; }
    this.routed.set(vnId, l3);
    this.program(vnId, l3);
  }

  private unroute(vnId: number): void {
    if (this.routed.has(vnId)) this.unprogram(vnId);
    this.routed.delete(vnId);
  }

  private program(vnId: number, r: RoutedVn): void {
    const dom = this.domains.get(r.dom);
    const idx = this.host.vnIdx(vnId);
    if (!dom || idx === undefined) return;
    if (dom.vns.size >= DOM_MAX_VNS) throw new Error(`l3domain ${dom.id}: at most ${DOM_MAX_VNS} routed VNs on one NVE`);
    const ex = this.host.ex;
    const v4 = r.ips.find((g) => !g.addr.is6), v6 = r.ips.find((g) => g.addr.is6);
    const s = new Uint8Array(32);
    if (v4) s.set(v4.addr.bytes.subarray(0, 4), 0);
    if (v6) s.set(v6.addr.bytes, 16);
    this.host.scratch(s, 0);
    ok(ex.setL3Vn(idx, dom.d + 1, r.mac.hi, r.mac.lo >>> 0, v4 ? 1 : 0, v6 ? 1 : 0), "l3 vn");
    dom.vns.add(vnId);
    // the gateway IPs as bindings of the gateway MAC: answered by ARP/ND (pipeline/route.ts)
    for (const g of r.ips) {
      this.host.scratch(g.addr.bytes, 0);
      ok(ex.setIp(idx, g.addr.is6 ? 1 : 0, r.mac.hi, r.mac.lo >>> 0), "gateway ip");
    }
    this.sync(vnId);
  }

  private unprogram(vnId: number): void {
    const r = this.routed.get(vnId);
    const idx = this.host.vnIdx(vnId);
    if (!r || idx === undefined) return;
    const dom = this.domains.get(r.dom);
    if (!dom?.vns.has(vnId)) return;
    const ex = this.host.ex;
    for (const g of r.ips) {
      this.host.scratch(g.addr.bytes, 0);
      ex.delIp(idx, g.addr.is6 ? 1 : 0);
    }
    ex.setL3Vn(idx, 0, 0, 0, 0, 0);
    dom.vns.delete(vnId);
    this.dropLinks(vnId);
  }

  private setRouterMac(nve: string, mac: Mac): void {
    const key = parseIp(nve, false)!.text;
    const old = this.routerMacs.get(key);
    this.routerMacs.set(key, mac);
    if (old && old.hi === mac.hi && old.lo === mac.lo) return;
    // a first router MAC: the routed VNs that NVE serves can reach it now
    if (!old) for (const vnId of this.routed.keys()) this.sync(vnId);
    for (const [k, t] of this.tuns) if (t.nve === key) {
      const dom = this.domains.get(Number(k.split("|")[0]))!;
      ok(this.host.ex.setL3Tunnel(dom.d, t.r, t.t, mac.hi, mac.lo >>> 0), "l3 tunnel");
    }
  }

  /** VN vnId's L3-VNI tunnels: one per NVE on its flood list with a router MAC, while the VN is routed. */
  private sync(vnId: number): void {
    const r = this.routed.get(vnId);
    const dom = r ? this.domains.get(r.dom) : undefined;
    const want = new Map<string, number>();
    if (dom?.vns.has(vnId)) {
      for (const nve of this.host.floodOf(vnId)) if (this.routerMacs.has(nve)) want.set(nve, dom.id);
    }
    const have = this.links.get(vnId) ?? new Map<string, number>();
    for (const [nve, d] of have) if (want.get(nve) !== d) { this.release(d, nve); have.delete(nve); }
    for (const [nve, d] of want) if (!have.has(nve)) { this.acquire(d, nve); have.set(nve, d); }
    if (have.size) this.links.set(vnId, have); else this.links.delete(vnId);
  }

  private dropLinks(vnId: number): void {
    for (const [nve, d] of this.links.get(vnId) ?? []) this.release(d, nve);
    this.links.delete(vnId);
  }

  private acquire(id: number, nve: string): void {
    const key = `${id}|${nve}`;
    const x = this.tuns.get(key);
    if (x) { x.refs++; return; }
    const dom = this.domains.get(id)!;
    const mac = this.routerMacs.get(nve)!;
    const { t, r } = this.host.acquireTunnel(dom.vnIdx, nve);
    const ex = this.host.ex;
    // the sender check on receive: the NVE is on the L3 VNI's list (underlay.ts)
    ex.setVtep(dom.vnIdx, r, 1);
    ok(ex.setL3Tunnel(dom.d, r, t, mac.hi, mac.lo >>> 0), "l3 tunnel");
    this.tuns.set(key, { t, r, nve, refs: 1 });
  }

  private release(id: number, nve: string): void {
    const key = `${id}|${nve}`;
    const x = this.tuns.get(key);
    if (!x || --x.refs > 0) return;
    const dom = this.domains.get(id)!;
    const ex = this.host.ex;
    ex.delL3Tunnel(dom.d, x.r);
    ex.setVtep(dom.vnIdx, x.r, 0);
    this.host.releaseTunnel(dom.vnIdx, x.r);
    this.tuns.delete(key);
  }
}

function ok(rc: number, what: string): void {
  if (rc !== 0) throw new Error(`${what}: ${rc === 1 ? "table full" : "out of range"}`);
}
