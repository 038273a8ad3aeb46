// nvedge data plane: the module's exports. One call per batch (process), the
// rest is table programming (control.ts) and layout/counter discovery for the
// host. See abi.ts for the memory contract.
import { SLOT_SIZE, HEADROOM, MAX_BATCH, IN_DESC, OUT_DESC, HDR_SLOT, MAX_OUT, I_OFF, I_LEN, I_PORT, I_FLAGS,
         IF_VNET, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT } from "./abi";
import { layoutFixed, slotBase, inDescBase, outDescBase, hdrBase, scratch, portKind, portCtr, globalCtr,
         dropCtr, vnCtr, traceBase, floodPool, floodPoolCap, tunCap, ctrInc, PORT_ACCESS, PORT_NONE, PORT_UNDERLAY,
         PORT_CTR, PC_RX_FRAMES, PC_RX_BYTES, GC_RX, GC_FORWARDED, GC_OUTPUTS, MAX_PORTS, TRACE_REC, MAX_VNS, vlanMap,
         MAX_REMOTES, MAX_LOCAL_PER_VN, vnPtr, VN_FLAGS, VNF_PORTSEC, VNF_ARPSUP } from "./state";
import { ARP_LEN, ARP_SPA, ARP_TPA } from "./proto/arp";
import { ETHERTYPE_VLAN, ETHERTYPE_IPV4, ETHERTYPE_ARP } from "./proto/ethernet";
import { raw16 } from "./util";
import { t64Init } from "./tables/hash64";
import { tipInit } from "./tables/haship";
import { macTab, ipTab, vniTab, remoteTab, prefixInit, macKey, macRaw, macHomes, macHomesInit, warmList, NO_HOME, macBase, macHome, tableGlobalsInit, ip4HomeSlot, ipWarmList } from "./tables/index";
import { controlInit } from "./control";
import { l3Init } from "./tables/l3";
import { accessFrame } from "./pipeline/access";
import { accessFast, underlayFast, underlayVn, underlayInner } from "./pipeline/fast";
import { underlayFrame } from "./pipeline/underlay";
import { resetOut, setCurIn, outCount } from "./pipeline/emit";
import { drop, dropNoPort, setCur } from "./pipeline/common";
import { D_FRAME_TOO_LONG, D_UNKNOWN_PORT, NUM_DROPS } from "./drops";
import { offloadFix, OFFLOAD_OK } from "./pipeline/offload";
import { puntInit, puntReset, puntTotal } from "./pipeline/punt";

export { dropNamesPtr, dropNamesLen } from "./drops";
export { setPort, setUnderlay, setVn, delVn, setTag, setRemote, delRemote, setVtep, setFlood, buildTunnel,
         setMacLocal, setMacRemote, delMac, getMac, setIp, delIp, setPrefix, purgeVn } from "./control";
export { setPrefixCount } from "./tables/index";
export { setL3Domain, delL3Domain, setL3Vn, setL3Tunnel, delL3Tunnel } from "./tables/l3";
export { setTrace, setFastPaths } from "./pipeline/common";
export { puntPtr, puntCount, puntLost, puntTotal } from "./pipeline/punt";

/** Inputs taken by the last process() call. */
export let consumed: u32 = 0;
/** Frames the fast paths (pipeline/fast.ts) forwarded, since init. */
export let fastFrames: u64 = 0;
/** The most outputs one frame can make (1 + flood list + local ports), kept by the host. */
let worstFanout: u32 = 64;
let ready = false;

/**
 * Lays out every table once. macLog2/ipLog2: slots in the MAC and IP tables
 * (2^21 slots hold 1,000,000 bindings at under half load); tunLog2: prebuilt
 * outer headers; floodCap: entries in the flood-list pool.
 */
export function init(macLog2: u32, ipLog2: u32, tunLog2: u32, floodCap: u32): void {
  if (ready) return;
  layoutFixed(tunLog2, floodCap);
  t64Init(macTab, macLog2);
  tipInit(ipTab, ipLog2);
  t64Init(vniTab, 15);
  tipInit(remoteTab, 13);
  prefixInit();
  tableGlobalsInit();
  controlInit();
  l3Init();
  macHomesInit();
  puntInit();
  ready = true;
}

export function setWorstFanout(n: u32): void { worstFanout = n; }

/** Kept so the warming loads of prefetchBatch are not optimised away. */
export let warmSink: u64 = 0;

/**
 * Appends to the warm list (at w) the IP-table slots the main pass will read
 * for the frames listed from ipWarmList to q: the source IP of IPv4 under
 * port security (seed §5), the target and the sender of an ARP request under
 * suppression and port security (RFC 9161). Returns the new end of the list.
 */
function warmIpSlots(q: usize, w: usize): usize {
  for (let r = ipWarmList; r < q; r += 4) {
    const x = load<u32>(r);
    const i = x & 0xffff;
    const vn = (x >> 16) - 1;
    const d = inDescBase + (<usize>i << 3);
    const len = <u32>load<u16>(d, I_LEN);
    const p = slotBase + <usize>i * SLOT_SIZE + <u32>load<u16>(d, I_OFF);
    const flags = <u32>load<u8>(vnPtr(vn), VN_FLAGS);
    const et = <u32>load<u16>(p + 16);
    if (et == raw16(ETHERTYPE_IPV4)) {
      if ((flags & VNF_PORTSEC) != 0) {
        if (len >= 18 + 20) {
          store<u32>(w, <u32>ip4HomeSlot(vn, p + 18 + 12));
          w += 4;
        }
      }
    } else if (et == raw16(ETHERTYPE_ARP)) {
      if (len >= 18 + ARP_LEN) {
        if ((flags & VNF_ARPSUP) != 0) {
          store<u32>(w, <u32>ip4HomeSlot(vn, p + 18 + ARP_TPA));
          w += 4;
        }
        if ((flags & VNF_PORTSEC) != 0) {
          store<u32>(w, <u32>ip4HomeSlot(vn, p + 18 + ARP_SPA));
          w += 4;
        }
      }
    }
  }
  return w;
}

/**
 * A first pass over the batch that touches the table slots its frames will
 * look up (an access frame's source and destination MAC, an underlay frame's
 * inner destination, the IP slots of warmIpSlots), so the cache misses of the
 * 256 frames overlap instead of queuing one behind the other in the main
 * pass (VPP's prefetch stage; wasm has no prefetch instruction, a load whose
 * value is kept does the job). Reads only inside the frame and the table.
 */
// Two phases: first every slot the batch will look up (no misses: descriptors,
// frames and the VLAN map are in cache), then a tight loop of loads only. A
// loop that interleaves the hashing with the loads keeps few misses in flight
// (the reorder buffer holds only a few of its long iterations); the load-only
// loop issues as many as the core's miss buffers take, and the fewer
// instructions it spends per load, the more of its loads fit in the reorder
// buffer at once: so the first phase lists the slots' addresses densely
// (warmList) and the second is unrolled by eight (bench/README.md finding 14).
// The homes are kept per frame (tables/index.ts macHomes) for the main pass.
function prefetchBatch(n: u32): void {
  const base = macBase;
  const hp = macHomes;
  const wl = warmList;
  let w: usize = wl;
  let q: usize = ipWarmList; // access frames whose VN checks IP bindings: (vn + 1) << 16 | i (both fit 16 bits)
  for (let i: u32 = 0; i < n; i++) {
    // the frame's two homes, written once at the end (NO_HOME: none)
    let h0: u32 = NO_HOME;
    let h1: u32 = NO_HOME;
    do {
      const d = inDescBase + (<usize>i << 3);
      const off = <u32>load<u16>(d, I_OFF);
      const len = <u32>load<u16>(d, I_LEN);
      const port = <u32>load<u16>(d, I_PORT);
      if (port >= MAX_PORTS) break; // one `if` per check (pipeline/fast.ts)
      if (len < 18) break;
      if (off + len > SLOT_SIZE) break;
      const k = load<u8>(portKind + port);
      const p = slotBase + <usize>i * SLOT_SIZE + off;
      if (k == PORT_ACCESS) {
        if (<u32>load<u16>(p + 12) != raw16(ETHERTYPE_VLAN)) break;
        const vid = <u32>bswap<u16>(load<u16>(p + 14)) & 0xfff;
        const vn1 = <u32>load<u16>(vlanMap + ((<usize>port << 12) + vid) * 2);
        if (vn1 == 0) break;
        h0 = macHome(macKey(vn1 - 1, macRaw(p + 6)));
        h1 = macHome(macKey(vn1 - 1, macRaw(p)));
        store<u32>(w, <u32>(base + (<usize>h0 << 4)));
        store<u32>(w, <u32>(base + (<usize>h1 << 4)), 4);
        w += 8;
        // The IP-table slots the main pass will read, listed in a second loop
        // (warmIpSlots): in this one, their hashing made the common path spill
        // (bench/README.md finding 18).
        if ((<u32>load<u8>(vnPtr(vn1 - 1), VN_FLAGS) & (VNF_PORTSEC | VNF_ARPSUP)) != 0) {
          store<u32>(q, (vn1 << 16) | i);
          q += 4;
        }
      } else if (k == PORT_UNDERLAY) {
        // The inner destination's slot, for the overlay headers the fast path
        // takes (pipeline/fast.ts underlayFast): IPv4 with a 20-byte header,
        // then VXLAN, Geneve without options or NVGRE. The VN is kept in the
        // source's place: the main pass uses the home only for that VN.
        const vn = underlayVn(p, len);
        if (vn < 0) break;
        h0 = <u32>vn;
        h1 = macHome(macKey(<u32>vn, macRaw(underlayInner(p))));
        store<u32>(w, <u32>(base + (<usize>h1 << 4)));
        w += 4;
      }
    } while (false);
    store<u64>(hp + (<usize>i << 3), <u64>h0 | (<u64>h1 << 32));
  }
  w = warmIpSlots(q, w);
  let s0: u64 = 0, s1: u64 = 0, s2: u64 = 0, s3: u64 = 0;
  // last slot first: the first frames' slots, loaded last, are still in L1
  // when the main pass starts with them
  let r = w;
  for (; r >= wl + 32; r -= 32) {
    s0 ^= load<u64>(<usize>load<u32>(r - 4));
    s1 ^= load<u64>(<usize>load<u32>(r - 8));
    s2 ^= load<u64>(<usize>load<u32>(r - 12));
    s3 ^= load<u64>(<usize>load<u32>(r - 16));
    s0 ^= load<u64>(<usize>load<u32>(r - 20));
    s1 ^= load<u64>(<usize>load<u32>(r - 24));
    s2 ^= load<u64>(<usize>load<u32>(r - 28));
    s3 ^= load<u64>(<usize>load<u32>(r - 32));
  }
  for (; r > wl; r -= 4) s0 ^= load<u64>(<usize>load<u32>(r - 4));
  warmSink = s0 ^ s1 ^ s2 ^ s3;
}

/**
 * One frame the long way: every check, drop reason and path (access.ts,
 * underlay.ts). Out of line so that the fast paths' values are not spilled
 * around it. Returns 1 when the frame produced an output.
 */
function slowFrame(i: u32): u32 {
  const d = inDescBase + (<usize>i << 3);
  const off = <u32>load<u16>(d, I_OFF);
  const len = <u32>load<u16>(d, I_LEN);
  const port = <u32>load<u16>(d, I_PORT);
  const p = slotBase + <usize>i * SLOT_SIZE + off;
  const before = outCount;
  const puntedBefore = puntTotal;
  const kind = port < MAX_PORTS ? load<u8>(portKind + port) : PORT_NONE;
  // a frame from a port we do not serve is charged to no port's counters
  if (kind == PORT_NONE) { setCur(0, -1); dropNoPort(D_UNKNOWN_PORT); return 0; }
  const pc = portCtr + (<usize>port * PORT_CTR << 3);
  ctrInc(pc, PC_RX_FRAMES, 1);
  ctrInc(pc, PC_RX_BYTES, len);
  // a descriptor that points outside its slot is refused before any read
  if (off + len > SLOT_SIZE) { setCur(port, -1); drop(D_FRAME_TOO_LONG); return 0; }
  if (kind == PORT_ACCESS) accessFrame(port, p, len);
  else underlayFrame(port, p, len);
  // forwarded: it left, or went to the host (pipeline/punt.ts; an ARP reply to us)
  return outCount != before || puntTotal != puntedBefore ? 1 : 0;
}

/**
 * A frame with offloads left to finish (in-desc flags, abi.ts): its checksum
 * completed, its GSO segment's headers made real (pipeline/offload.ts), then
 * false so the frame goes on as any other; true when it was dropped instead
 * (counted on its port, under the reason offloadFix gave).
 */
function offloadFrame(i: u32, fl: u32): bool {
  const d = inDescBase + (<usize>i << 3);
  const off = <u32>load<u16>(d, I_OFF);
  const len = <u32>load<u16>(d, I_LEN);
  const port = <u32>load<u16>(d, I_PORT);
  if (port >= MAX_PORTS || load<u8>(portKind + port) == PORT_NONE || off + len > SLOT_SIZE) return false; // slowFrame drops it
  const why = offloadFix(slotBase + <usize>i * SLOT_SIZE + off, len, off, fl);
  if (why == OFFLOAD_OK) return false;
  setCur(port, -1);
  const pc = portCtr + (<usize>port * PORT_CTR << 3);
  ctrInc(pc, PC_RX_FRAMES, 1);
  ctrInc(pc, PC_RX_BYTES, len);
  drop(why);
  return true;
}

/**
 * The common cases (fast.ts): true when the frame was forwarded, with the
 * same outputs and counters slowFrame would give; false, having written
 * nothing, for slowFrame to take it.
 */
@inline function fastFrame(i: u32): bool {
  const d = inDescBase + (<usize>i << 3);
  const off = <u32>load<u16>(d, I_OFF);
  const len = <u32>load<u16>(d, I_LEN);
  const port = <u32>load<u16>(d, I_PORT);
  if (port >= MAX_PORTS) return false;
  if (off + len > SLOT_SIZE) return false;
  const kind = load<u8>(portKind + port);
  const p = slotBase + <usize>i * SLOT_SIZE + off;
  if (kind == PORT_ACCESS) {
    if (!accessFast(port, p, len, macHomes + (<usize>i << 3))) return false;
  } else if (kind == PORT_UNDERLAY) {
    if (!underlayFast(p, len, macHomes + (<usize>i << 3))) return false;
  } else return false;
  const pc = portCtr + (<usize>port * PORT_CTR << 3);
  ctrInc(pc, PC_RX_FRAMES, 1);
  ctrInc(pc, PC_RX_BYTES, len);
  return true;
}

export function process(n: u32): u32 {
  resetOut();
  puntReset();
  if (n > MAX_BATCH) n = MAX_BATCH;
  prefetchBatch(n);
  // The batch-wide counters are added once per batch (the host reads them
  // only between batches): three fewer read-modify-writes per frame.
  let forwarded: u32 = 0;
  let fast: u32 = 0;
  let i: u32 = 0;
  for (; i < n; i++) {
    if (outCount + worstFanout > MAX_OUT) break;
    setCurIn(i); // the input index every output and trace record carries
    const fl = <u32>load<u16>(inDescBase + (<usize>i << 3), I_FLAGS);
    if (fl != 0) {
      if (offloadFrame(i, fl)) continue;
      // offloadFix may have rewritten header bytes the prefetch pass hashed (a
      // fuzzed csum_offset lands a checksum in a VXLAN VNI): its homes are
      // stale, so the fast paths recompute them or hand the frame over
      store<u64>(macHomes + (<usize>i << 3), 0xffffffffffffffff);
    }
    if (fastFrame(i)) fast++;
    else forwarded += slowFrame(i);
  }
  forwarded += fast;
  fastFrames += fast;
  ctrInc(globalCtr, GC_RX, <u64>i);
  ctrInc(globalCtr, GC_FORWARDED, <u64>forwarded);
  ctrInc(globalCtr, GC_OUTPUTS, <u64>outCount); // every output of the batch (emit.ts commit)
  consumed = i;
  return outCount;
}

// Layout discovery (abi.ts)
export function slotBasePtr(): usize { return slotBase; }
export function inDescPtr(): usize { return inDescBase; }
export function outDescPtr(): usize { return outDescBase; }
export function hdrBasePtr(): usize { return hdrBase; }
export function scratchPtr(): usize { return scratch; }
export function floodPoolPtr(): usize { return floodPool; }
export function floodPoolSize(): u32 { return floodPoolCap; }
export function tunnelCapacity(): u32 { return tunCap; }
export function globalCtrPtr(): usize { return globalCtr; }
export function dropCtrPtr(): usize { return dropCtr; }
export function portCtrPtr(): usize { return portCtr; }
export function vnCtrPtr(): usize { return vnCtr; }
export function tracePtr(): usize { return traceBase; }
export function macCount(): u32 { return macTab.count; }
export function macCapacity(): u32 { return macTab.limit; }
export function macSlots(): u32 { return macTab.mask + 1; }
export function ipCount(): u32 { return ipTab.count; }
export function ipCapacity(): u32 { return ipTab.limit; }
export function ipSlots(): u32 { return ipTab.mask + 1; }
export function constants(which: u32): u32 {
  switch (which) {
    case 0: return SLOT_SIZE;
    case 1: return HEADROOM;
    case 2: return MAX_BATCH;
    case 3: return IN_DESC;
    case 4: return OUT_DESC;
    case 5: return HDR_SLOT;
    case 6: return MAX_OUT;
    case 7: return MAX_PORTS;
    case 8: return MAX_VNS;
    case 9: return MAX_REMOTES;
    case 10: return MAX_LOCAL_PER_VN;
    case 11: return NUM_DROPS;
    case 12: return TRACE_REC;
    case 13: return IF_VNET;
    case 14: return IF_GSO_SEG;
    case 15: return IF_GSO_LAST;
    case 16: return IF_SEG_SHIFT;
    default: return 0;
  }
}
void outDescBase; void HEADROOM;
