// The L3 service's tables (seed §3.1.2; PROTOCOL.md §5 `service: "l3"`):
//   vnL3:      per VN index, 32 bytes: u32 info (0: an L2 VN; L3_VN | domain:
//              a routed VN; L3_VNI | domain: the internal VN that carries the
//              domain's L3 VNI), u32 gateway IPv4 address (raw, 0: none), u64
//              the gateway MAC (raw form, tables/index.ts macRaw), 16 bytes the
//              gateway IPv6 address (all zero: none). The gateway addresses are
//              the source of the ICMP errors the gateway sends.
//   domains:   per routing domain, DOM_SIZE bytes: u32 the L3 VNI's internal VN
//              index + 1 (0: no such domain), u32 how many routed VNs, u64 our
//              router MAC (raw), then the routed VNs' indices (u16 each).
//   tunRemote: per tunnel, the remote NVE it leads to (set by buildTunnel), so
//              a remote host's binding (MK_REMOTE | tunnel) names its NVE.
//   l3Tun:     (domain, remote NVE) -> the tunnel that carries the domain's L3
//              VNI to it, and per such tunnel the NVE's router MAC (from its
//              `vtep` record, PROTOCOL.md §6) in l3TunMac.
// The host (host/dataplane/l3.ts) keeps the bookkeeping; these are written
// between batches only.
import { alloc, MAX_VNS, tunCap, scratch } from "../state";
import { Table64, t64Init, t64Put, t64Del, t64Find } from "./hash64";
import { macTab, macKey, MK_KIND } from "./index";

export const MAX_DOMAINS: u32 = 1024;
export const DOM_SIZE: u32 = 256;
export const DOM_VNI_VN: u32 = 0;
export const DOM_NVN: u32 = 4;
export const DOM_RMAC: u32 = 8;
export const DOM_VNS: u32 = 16;
/** Routed VNs of one domain on one NVE: (DOM_SIZE - DOM_VNS) / 2. */
export const DOM_MAX_VNS: u32 = 120;

export const L3_SIZE: u32 = 32;
export const L3_INFO: u32 = 0;
export const L3_GW4: u32 = 4;
export const L3_GWMAC: u32 = 8;
export const L3_GW6: u32 = 16;
export const L3_VN: u32 = 0x10000;
export const L3_VNI: u32 = 0x20000;
export const L3_DOM_MASK: u32 = 0xffff;

/**
 * A MAC table value of this kind (the one kind tables/index.ts leaves free)
 * is a routed VN's gateway MAC: frames to it are routed (pipeline/route.ts).
 * It has no ML_ACTIVE bit, so the fast paths hand such frames to the full path.
 */
export const MK_ROUTER: u32 = 0xc0000000;

export let vnL3: usize = 0;
export let domBase: usize = 0;
export let tunRemote: usize = 0;
export let l3TunMac: usize = 0;
export const l3Tun = new Table64();

export function l3Init(): void {
  vnL3 = alloc(<usize>MAX_VNS * L3_SIZE);
  domBase = alloc(<usize>MAX_DOMAINS * DOM_SIZE);
  tunRemote = alloc(<usize>tunCap * 4);
  l3TunMac = alloc(<usize>tunCap * 8);
  t64Init(l3Tun, 13);
}

@inline export function l3Ptr(vn: u32): usize { return vnL3 + <usize>vn * L3_SIZE; }
@inline export function domPtr(d: u32): usize { return domBase + <usize>d * DOM_SIZE; }
@inline export function l3Info(vn: u32): u32 { return load<u32>(vnL3 + <usize>vn * L3_SIZE); }

/** Called by control.ts buildTunnel: tunnel t leads to remote NVE r. */
export function noteTunnelRemote(t: u32, r: u32): void { store<u32>(tunRemote + (<usize>t << 2), r); }

@inline function l3TunKey(dom: u32, r: u32): u64 { return (<u64>(dom + 1) << 32) | <u64>r; }

/** The tunnel carrying domain `dom`'s L3 VNI to remote NVE r, or -1. */
@inline export function l3TunFind(dom: u32, r: u32): i32 {
  const s = t64Find(l3Tun, l3TunKey(dom, r));
  return s == 0 ? -1 : <i32>load<u32>(s, 8);
}

// ------------------------------------------------------------ programming

const OK: i32 = 0;
const E_FULL: i32 = 1;
const E_RANGE: i32 = 2;

/** Domain d: its L3 VNI rides on internal VN `vniVn`; our router MAC is (hi, lo) (first octet most significant). */
export function setL3Domain(d: u32, vniVn: u32, hi: u32, lo: u32): i32 {
  if (d >= MAX_DOMAINS || vniVn >= MAX_VNS) return E_RANGE;
  const e = domPtr(d);
  store<u32>(e, vniVn + 1, DOM_VNI_VN);
  store<u64>(e, macRawHiLo(hi, lo), DOM_RMAC);
  store<u32>(l3Ptr(vniVn), L3_VNI | d, L3_INFO);
  return OK;
}

/** Removes domain d (the host has taken its VNs out first). */
export function delL3Domain(d: u32): i32 {
  if (d >= MAX_DOMAINS) return E_RANGE;
  const e = domPtr(d);
  const vv = load<u32>(e, DOM_VNI_VN);
  if (vv != 0) memory.fill(l3Ptr(vv - 1), 0, L3_SIZE);
  memory.fill(e, 0, DOM_SIZE);
  return OK;
}

function domRemoveVn(d: u32, vn: u32): void {
  const e = domPtr(d);
  const n = load<u32>(e, DOM_NVN);
  for (let i: u32 = 0; i < n; i++) {
    const s = e + DOM_VNS + (<usize>i << 1);
    if (<u32>load<u16>(s) == vn) {
      // the last entry into the hole, then the count: a reader between
      // batches never sees a torn list
      store<u16>(s, load<u16>(e + DOM_VNS + (<usize>(n - 1) << 1)));
      store<u32>(e, n - 1, DOM_NVN);
      return;
    }
  }
}

/**
 * VN vn becomes routed in domain `dom1 - 1` with gateway MAC (hi, lo) and the
 * gateway addresses in scratch (IPv4 at 0..4, IPv6 at 16..32; has4/has6 say
 * which), or (dom1 = 0) an L2 VN again. The gateway MAC goes into the MAC
 * table as MK_ROUTER, so a frame to it is routed.
 */
export function setL3Vn(vn: u32, dom1: u32, hi: u32, lo: u32, has4: bool, has6: bool): i32 {
  if (vn >= MAX_VNS || dom1 > MAX_DOMAINS) return E_RANGE;
  const x = l3Ptr(vn);
  const old = load<u32>(x, L3_INFO);
  if ((old & L3_VN) != 0) {
    domRemoveVn(old & L3_DOM_MASK, vn);
    const k = macKey(vn, load<u64>(x, L3_GWMAC));
    const s = t64Find(macTab, k);
    if (s != 0 && (load<u32>(s, 8) & MK_KIND) == MK_ROUTER) t64Del(macTab, k);
    memory.fill(x, 0, L3_SIZE);
  }
  if (dom1 == 0) return OK;
  const d = dom1 - 1;
  const e = domPtr(d);
  if (load<u32>(e, DOM_VNI_VN) == 0) return E_RANGE;
  const n = load<u32>(e, DOM_NVN);
  if (n >= DOM_MAX_VNS) return E_FULL;
  const mac = macRawHiLo(hi, lo);
  if (!t64Put(macTab, macKey(vn, mac), MK_ROUTER, 0)) return E_FULL;
  store<u16>(e + DOM_VNS + (<usize>n << 1), <u16>vn);
  store<u32>(e, n + 1, DOM_NVN);
  store<u32>(x, has4 ? load<u32>(scratch) : 0, L3_GW4);
  store<u64>(x, mac, L3_GWMAC);
  if (has6) memory.copy(x + L3_GW6, scratch + 16, 16);
  else memory.fill(x + L3_GW6, 0, 16);
  store<u32>(x, L3_VN | d, L3_INFO);
  return OK;
}

/** Tunnel t carries domain d's L3 VNI to remote NVE r, whose router MAC is (hi, lo). */
export function setL3Tunnel(d: u32, r: u32, t: u32, hi: u32, lo: u32): i32 {
  if (d >= MAX_DOMAINS || t >= tunCap) return E_RANGE;
  store<u64>(l3TunMac + (<usize>t << 3), macRawHiLo(hi, lo));
  return t64Put(l3Tun, l3TunKey(d, r), t, 0) ? OK : E_FULL;
}

export function delL3Tunnel(d: u32, r: u32): i32 {
  if (d >= MAX_DOMAINS) return E_RANGE;
  t64Del(l3Tun, l3TunKey(d, r));
  return OK;
}

/** A MAC passed as its top 16 and low 32 bits, in the raw form frames are compared in. */
@inline function macRawHiLo(hi: u32, lo: u32): u64 {
  return bswap<u64>((<u64>(hi & 0xffff) << 32) | <u64>lo) >> 16;
}
