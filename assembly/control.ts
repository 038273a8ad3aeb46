// Table programming, called by the host between batches (never per frame).
// Arguments that do not fit in numbers (addresses) are passed through the
// scratch area. The host keeps the bookkeeping (index allocation, reference
// counts) in host/dataplane/dataplane.ts; these functions only write tables.
import { scratch, portKind, vlanMap, vnPortTag, vnPtr, tunPtr, tunCap, vtepBits, MAX_PORTS, MAX_VNS, MAX_REMOTES,
         MAX_LOCAL_PER_VN, VN_VNI, VN_ENCAP, VN_FLAGS, VN_DSCP, VN_NLOCAL, VN_MTU, VN_FLOOD_PTR, VN_FLOOD_N,
         VN_LOCAL, VN_SALT, VNF_DSCP_FIXED, VNF_LIVE, ENC_VXLAN, ENC_GENEVE, ENC_NVGRE, TUN_SIZE, TUN_HDR, alloc } from "./state";
import { t64Put, t64Del, t64Find } from "./tables/hash64";
import { tipPut, tipDel } from "./tables/haship";
import { macTab, ipTab, vniTab, remoteTab, vniKey, macKey, macRawOf, macRaw, MK_LOCAL, MK_REMOTE, ML_ACTIVE, ML_PORT_SHIFT,
         IP6_TAG, prefixBase, MAX_PREFIXES } from "./tables/index";
import { setUlIdentity } from "./pipeline/underlay";
import { nextHopInit, nextHopOf, clearNextHops, TN_NH_ONE, TN_NH_NONE } from "./pipeline/nexthop";
import { noteTunnelRemote } from "./tables/l3";
import { TK_VXLAN4, TK_VXLAN6, TK_GENEVE4, TK_GENEVE6, TK_NVGRE4, TK_NVGRE6 } from "./pipeline/encap";
import { st8, st16, st32, ldMac, stMac, csumAdd, csumFold, mix64 } from "./util";
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_TEB } from "./proto/ethernet";
import { IPPROTO_UDP, IPPROTO_GRE, IP4_DF } from "./proto/ipv4";
import { VXLAN_FLAG_I } from "./proto/vxlan";
import { NVGRE_FLAGS_K } from "./proto/nvgre";

export const OK: i32 = 0;
export const E_FULL: i32 = 1;
export const E_RANGE: i32 = 2;

let ulPort: u32 = 0;
let ulIs6: bool = false;
let vxPort: u32 = 4789;
let gnPort: u32 = 6081;
let remoteIps: usize = 0; // MAX_REMOTES x 16 bytes
const ul = new StaticArray<u8>(32); // our mac (0), gateway mac (8), our ip (16)
let gwMissing: bool = true;

export function controlInit(): void { remoteIps = alloc(<usize>MAX_REMOTES * 16); nextHopInit(); }

export function setPort(port: u32, kind: u8): i32 {
  if (port >= MAX_PORTS) return E_RANGE;
  store<u8>(portKind + port, kind);
  return OK;
}

/** scratch: our MAC (0..6), gateway MAC (8..14), our IP (16..32; IPv4 in 16..20). */
export function setUnderlay(port: u32, is6: bool, vx: u32, gn: u32): i32 {
  // UDP ports are 16 bits: the fast path compares the wire field with their byte-swapped u16 form
  if (port >= MAX_PORTS || vx > 0xffff || gn > 0xffff) return E_RANGE;
  memory.copy(changetype<usize>(ul), scratch, 32);
  ulPort = port; ulIs6 = is6; vxPort = vx; gnPort = gn;
  const a = changetype<usize>(ul) + 16;
  setUlIdentity(macRaw(changetype<usize>(ul)), is6, is6 ? load<u64>(a) : <u64>load<u32>(a), is6 ? load<u64>(a, 8) : 0, vx, gn);
  // the gateway MAC (bytes 8..13): all zero or a group address = not resolved
  // yet; the tunnels that use it are marked as having no next hop (buildTunnel)
  const g = changetype<usize>(ul) + 8;
  gwMissing = (load<u8>(g) & 1) != 0 || (load<u32>(g) == 0 && load<u16>(g + 4) == 0);
  return OK;
}

export function setVn(vn: u32, vni: u32, encap: u32, mtu: u32, flags: u32, dscp: u32): i32 {
  if (vn >= MAX_VNS) return E_RANGE;
  const v = vnPtr(vn);
  const live = (load<u8>(v, VN_FLAGS) & VNF_LIVE) != 0;
  const newKey = vniKey(encap, vni);
  if (live) {
    const oldKey = vniKey(<u32>load<u8>(v, VN_ENCAP), load<u32>(v, VN_VNI));
    if (oldKey != newKey) {
      if (t64Find(vniTab, newKey) == 0 && vniTab.count >= vniTab.limit) return E_FULL;
      t64Del(vniTab, oldKey);
    }
  }
  if (!t64Put(vniTab, newKey, vn, 0)) return E_FULL;
  store<u32>(v, vni, VN_VNI);
  store<u8>(v, <u8>encap, VN_ENCAP);
  store<u8>(v, <u8>dscp, VN_DSCP);
  store<u16>(v, <u16>mtu, VN_MTU);
  // tipHome's inner mix64 for this VN's tag (vn + 1), once here rather than
  // per IPv4 lookup on the per-frame paths (tables/index.ts ip4Home)
  store<u64>(v, mix64(<u64>(vn + 1)), VN_SALT);
  store<u8>(v, <u8>(flags | VNF_LIVE), VN_FLAGS);
  return OK;
}

/** Removes a VN; the host has already removed its tags, bindings and flood list (seed §3.1 containment). */
export function delVn(vn: u32): i32 {
  if (vn >= MAX_VNS) return E_RANGE;
  const v = vnPtr(vn);
  if ((load<u8>(v, VN_FLAGS) & VNF_LIVE) == 0) return OK;
  t64Del(vniTab, vniKey(<u32>load<u8>(v, VN_ENCAP), load<u32>(v, VN_VNI)));
  memory.fill(v, 0, 32);
  return OK;
}

function localDel(vn: u32, port: u32, vid: u32): void {
  const v = vnPtr(vn);
  const n = <u32>load<u8>(v, VN_NLOCAL);
  const want = (port << 16) | vid;
  for (let i: u32 = 0; i < n; i++) {
    const e = v + VN_LOCAL + (<usize>i << 2);
    if (load<u32>(e) == want) {
      // move the last entry into the hole, then shrink: a reader between
      // batches sees either list, never a torn one
      store<u32>(e, load<u32>(v + VN_LOCAL + (<usize>(n - 1) << 2)));
      store<u8>(v, <u8>(n - 1), VN_NLOCAL);
      return;
    }
  }
}

/**
 * The tag a VN's local VNICs on `port` are reached with: the VN's first
 * (port, tag) pair on that port, 0 when it has none. Unicast to a local VNIC
 * reads it at forwarding time, so a tag removed or remapped never carries
 * that VN's frames again (RFC 8394 §3: the VAP's Local_Tag).
 */
function refreshPortTag(vn: u32, port: u32): void {
  const v = vnPtr(vn);
  const n = <u32>load<u8>(v, VN_NLOCAL);
  let tag: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const e = load<u32>(v + VN_LOCAL + (<usize>i << 2));
    if ((e >> 16) == port) { tag = e & 0xfff; break; }
  }
  store<u16>(vnPortTag + ((<usize>vn * MAX_PORTS + port) << 1), <u16>tag);
}

/** (port, vid) -> vn + 1 (0 unmaps). Keeps each VN's list of local (port, tag) for flooding. */
export function setTag(port: u32, vid: u32, vn1: u32): i32 {
  if (port >= MAX_PORTS || vid == 0 || vid >= 4095 || vn1 > MAX_VNS) return E_RANGE;
  const slot = vlanMap + ((<usize>port << 12) + vid) * 2;
  const old = <u32>load<u16>(slot);
  if (old == vn1) return OK;
  if (vn1 != 0) {
    const v = vnPtr(vn1 - 1);
    const n = <u32>load<u8>(v, VN_NLOCAL);
    if (n >= MAX_LOCAL_PER_VN) return E_FULL;
    store<u32>(v + VN_LOCAL + (<usize>n << 2), (port << 16) | vid);
    store<u8>(v, <u8>(n + 1), VN_NLOCAL);
  }
  if (old != 0) {
    localDel(old - 1, port, vid);
    refreshPortTag(old - 1, port);
  }
  store<u16>(slot, <u16>vn1);
  if (vn1 != 0) refreshPortTag(vn1 - 1, port);
  return OK;
}

/** Remote NVE r: its underlay address in scratch[0..16). */
export function setRemote(r: u32, is6: bool): i32 {
  if (r >= MAX_REMOTES) return E_RANGE;
  memory.copy(remoteIps + (<usize>r << 4), scratch, 16);
  const a0 = is6 ? load<u64>(scratch) : <u64>load<u32>(scratch);
  const a1 = is6 ? load<u64>(scratch, 8) : 0;
  return tipPut(remoteTab, is6 ? 6 : 4, a0, a1, r) ? OK : E_FULL;
}

export function delRemote(r: u32, is6: bool): i32 {
  if (r >= MAX_REMOTES) return E_RANGE;
  const p = remoteIps + (<usize>r << 4);
  clearNextHops(r);
  tipDel(remoteTab, is6 ? 6 : 4, is6 ? load<u64>(p) : <u64>load<u32>(p), is6 ? load<u64>(p, 8) : 0);
  return OK;
}

export function setVtep(vn: u32, r: u32, on: bool): i32 {
  if (vn >= MAX_VNS || r >= MAX_REMOTES) return E_RANGE;
  const bit = <usize>vn * MAX_REMOTES + r;
  const p = vtepBits + (bit >> 3);
  const m = <u8>1 << <u8>(bit & 7);
  store<u8>(p, on ? load<u8>(p) | m : load<u8>(p) & ~m);
  return OK;
}

/** The VN's flood list: `n` tunnel indices the host wrote at floodPool[off..off+n). */
export function setFlood(vn: u32, off: u32, n: u32): i32 {
  if (vn >= MAX_VNS) return E_RANGE;
  const v = vnPtr(vn);
  // count first (0), then the new pointer, then the count: never a count
  // that runs past the list it describes
  store<u32>(v, 0, VN_FLOOD_N);
  store<u32>(v, off, VN_FLOOD_PTR);
  store<u32>(v, n, VN_FLOOD_N);
  return OK;
}

/**
 * Builds tunnel t's outer header toward remote r for VN vn (STYLE.md 3: the
 * control plane builds the whole outer header once; the encap path copies it
 * and patches lengths, checksum and entropy). Layouts: STANDARDS.md.
 */
export function buildTunnel(t: u32, vn: u32, r: u32): i32 {
  if (t >= tunCap || vn >= MAX_VNS || r >= MAX_REMOTES) return E_RANGE;
  const e = tunPtr(t);
  memory.fill(e, 0, TUN_SIZE);
  noteTunnelRemote(t, r); // a remote binding's NVE, for symmetric IRB (pipeline/route.ts)
  const v = vnPtr(vn);
  const enc = <u32>load<u8>(v, VN_ENCAP);
  const vni = load<u32>(v, VN_VNI);
  const fixed = (load<u8>(v, VN_FLAGS) & VNF_DSCP_FIXED) != 0;
  const tos: u32 = fixed ? (<u32>load<u8>(v, VN_DSCP) << 2) : 0;
  const h = e + TUN_HDR;
  const u = changetype<usize>(ul);
  // next hop: the remote's own (routes, pipeline/nexthop.ts) or the gateway
  let nh = nextHopOf(r, h);
  if (nh == 255) { memory.copy(h, u + 8, 6); nh = gwMissing ? TN_NH_NONE : TN_NH_ONE; }
  store<u8>(e, <u8>nh, 9);
  store<u16>(e, <u16>r, 12);
  memory.copy(h + 6, u, 6);
  const rip = remoteIps + (<usize>r << 4);
  let l4: usize;
  let kind: u32;
  if (!ulIs6) {
    st16(h + 12, ETHERTYPE_IPV4);
    const ip = h + 14;
    st8(ip, 0x45);
    st8(ip + 1, tos);
    st16(ip + 6, IP4_DF); // STANDARDS.md: DF set, never fragment (RFC 7348 §4.3)
    st8(ip + 8, 64);
    st8(ip + 9, enc == ENC_NVGRE ? IPPROTO_GRE : IPPROTO_UDP);
    memory.copy(ip + 12, u + 16, 4);
    memory.copy(ip + 16, rip, 4);
    store<u16>(e, <u16>csumFold(csumAdd(0, ip, 20)), 2);
    l4 = ip + 20;
    kind = enc == ENC_VXLAN ? TK_VXLAN4 : enc == ENC_GENEVE ? TK_GENEVE4 : TK_NVGRE4;
  } else {
    st16(h + 12, ETHERTYPE_IPV6);
    const ip = h + 14;
    st32(ip, 0x60000000 | (tos << 20));
    st8(ip + 6, enc == ENC_NVGRE ? IPPROTO_GRE : IPPROTO_UDP);
    st8(ip + 7, 64);
    memory.copy(ip + 8, u + 16, 16);
    memory.copy(ip + 24, rip, 16);
    store<u32>(e, <u32>csumAdd(<u64>IPPROTO_UDP, ip + 8, 32), 4);
    l4 = ip + 40;
    kind = enc == ENC_VXLAN ? TK_VXLAN6 : enc == ENC_GENEVE ? TK_GENEVE6 : TK_NVGRE6;
  }
  let end: usize;
  if (enc == ENC_NVGRE) {
    st16(l4, NVGRE_FLAGS_K);
    st16(l4 + 2, ETHERTYPE_TEB);
    st32(l4 + 4, vni << 8);
    end = l4 + 8;
  } else {
    st16(l4 + 2, enc == ENC_VXLAN ? vxPort : gnPort);
    const x = l4 + 8;
    if (enc == ENC_VXLAN) {
      st8(x, VXLAN_FLAG_I);
    } else {
      st16(x + 2, ETHERTYPE_TEB); // version 0, no options, O and C clear
    }
    st32(x + 4, vni << 8);
    end = x + 8;
  }
  store<u8>(e, <u8>(end - h));
  store<u8>(e, <u8>kind, 1);
  store<u8>(e, fixed ? 1 : 0, 8);
  store<u16>(e, <u16>ulPort, 10);
  return OK;
}

// MAC bindings. The MAC is passed as its top 16 bits and low 32 bits.
@inline function mac(hi: u32, lo: u32): u64 { return (<u64>(hi & 0xffff) << 32) | lo; }

/** `policer`: the VNIC's policer index (1..2^31-1; 0 none), in the entry's spare word (pipeline/qos.ts policerKey). */
export function setMacLocal(vn: u32, hi: u32, lo: u32, port: u32, tag: u32, active: bool, policer: u32): i32 {
  if (vn >= MAX_VNS || port >= MAX_PORTS || tag > 4094 || policer >= 0x80000000) return E_RANGE;
  const val = MK_LOCAL | (active ? ML_ACTIVE : 0) | (port << ML_PORT_SHIFT) | tag;
  return t64Put(macTab, macKey(vn, macRawOf(mac(hi, lo))), val, policer) ? OK : E_FULL;
}

export function setMacRemote(vn: u32, hi: u32, lo: u32, t: u32): i32 {
  if (vn >= MAX_VNS || t >= tunCap) return E_RANGE;
  return t64Put(macTab, macKey(vn, macRawOf(mac(hi, lo))), MK_REMOTE | t, 0) ? OK : E_FULL;
}

export function delMac(vn: u32, hi: u32, lo: u32): i32 {
  if (vn >= MAX_VNS) return E_RANGE;
  t64Del(macTab, macKey(vn, macRawOf(mac(hi, lo))));
  return OK;
}

/** The MAC entry's value (tables/index.ts encoding), 0 when absent. */
export function getMac(vn: u32, hi: u32, lo: u32): u32 {
  if (vn >= MAX_VNS) return 0;
  const s = t64Find(macTab, macKey(vn, macRawOf(mac(hi, lo))));
  return s == 0 ? 0 : load<u32>(s, 8);
}

/** IP binding: the address in scratch[0..16) -> MAC. */
export function setIp(vn: u32, is6: bool, hi: u32, lo: u32): i32 {
  if (vn >= MAX_VNS) return E_RANGE;
  const tag = (vn + 1) | (is6 ? IP6_TAG : 0);
  const a0 = is6 ? load<u64>(scratch) : <u64>load<u32>(scratch);
  return tipPut(ipTab, tag, a0, is6 ? load<u64>(scratch, 8) : 0, mac(hi, lo)) ? OK : E_FULL;
}

export function delIp(vn: u32, is6: bool): i32 {
  if (vn >= MAX_VNS) return E_RANGE;
  const tag = (vn + 1) | (is6 ? IP6_TAG : 0);
  tipDel(ipTab, tag, is6 ? load<u64>(scratch) : <u64>load<u32>(scratch), is6 ? load<u64>(scratch, 8) : 0);
  return OK;
}

/** Prefix entry i (the host keeps the list dense): address in scratch[0..16). */
export function setPrefix(i: u32, vn: u32, is6: bool, plen: u32, hi: u32, lo: u32): i32 {
  if (i >= MAX_PREFIXES || vn >= MAX_VNS) return E_RANGE;
  const e = prefixBase + (<usize>i << 5);
  store<u32>(e, (vn + 1) | (is6 ? IP6_TAG : 0));
  store<u32>(e, plen, 4);
  memory.copy(e + 8, scratch, 16);
  store<u64>(e, mac(hi, lo), 24);
  return OK;
}

export { stMac };

/**
 * Removes every MAC and IP binding of a VN (seed §3.1 containment when a VN
 * is deleted). A deletion may shift later members of a cluster back into the
 * slot just emptied, so each slot is re-examined until it holds another VN.
 */
export function purgeVn(vn: u32): void {
  const tag = <u64>(vn + 1);
  for (let i: u32 = 0; i <= macTab.mask; i++) {
    const s = macTab.base + (<usize>i << 4);
    while (true) {
      const k = load<u64>(s);
      if (k == 0 || (k >> 48) != tag) break;
      t64Del(macTab, k);
    }
  }
  for (let i: u32 = 0; i <= ipTab.mask; i++) {
    const s = ipTab.base + (<usize>i << 5);
    while (true) {
      const t = load<u32>(s);
      if (t == 0 || (t & ~IP6_TAG) != vn + 1) break;
      tipDel(ipTab, t, load<u64>(s, 8), load<u64>(s, 16));
    }
  }
}

/**
 * Expands a table image's pages (host/dataplane/image.ts, format version 3)
 * staged at [src, src + len) into memory, for a restart (issue 15): the host
 * reads the image into a transient area (the frame slots) a piece at a time
 * and hands it here, one call per piece rather than a JS call per run. Each
 * page record: u32 page number, u32 body bytes, then runs, each a u32 (zero
 * words to skip in the low 16 bits, data words in the high 16) and its data
 * words. Returns the bytes of whole records expanded (what follows is the
 * start of a record the next piece completes), or -1 when a record reaches
 * outside its page or the memory (corrupt: the host refuses the image).
 */
export function imageExpand(src: usize, len: u32, pageBytes: u32): i32 {
  const end = src + len;
  const memEnd = <usize>memory.size() << 16;
  let p = src;
  while (p + 8 <= end) {
    const body = <usize>load<u32>(p, 4);
    if (p + 8 + body > end) break;
    const base = <usize>load<u32>(p) * pageBytes;
    const top = base + pageBytes;
    if (top > memEnd || (body & 3) != 0) return -1;
    let d = base;
    let q = p + 8;
    const qe = q + body;
    while (q < qe) {
      const h = load<u32>(q);
      q += 4;
      d += <usize>(h & 0xffff) << 2;
      const n = <usize>(h >>> 16) << 2;
      if (d + n > top || q + n > qe) return -1;
      memory.copy(d, q, n);
      d += n;
      q += n;
    }
    p = qe;
  }
  return <i32>(p - src);
}
