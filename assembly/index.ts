// nvedge data plane: the module's exports. One call per batch (process), the
// rest is table programming (control.ts) and layout/counter discovery for the
// host. See abi.ts for the memory contract.
import { SLOT_SIZE, HEADROOM, MAX_BATCH, IN_DESC, OUT_DESC, HDR_SLOT, MAX_OUT, I_OFF, I_LEN, I_PORT, I_FLAGS,
         IF_VNET, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT, IF_GSO_WHOLE } from "./abi";
import { layoutFixed, slotBase, inDescBase, outDescBase, hdrBase, scratch, portKind, portCtr, globalCtr,
         dropCtr, vnCtr, traceBase, floodPool, floodPoolCap, tunCap, ctrInc, ctrInc2, PORT_ACCESS, PORT_NONE, PORT_UNDERLAY,
         PORT_CTR, PC_RX_FRAMES, PC_RX_BYTES, GC_RX, GC_FORWARDED, GC_OUTPUTS, MAX_PORTS, TRACE_REC, MAX_VNS,
         MAX_REMOTES, MAX_LOCAL_PER_VN } from "./state";
import { t64Init } from "./tables/hash64";
import { tipInit } from "./tables/haship";
import { macTab, ipTab, vniTab, remoteTab, prefixInit, macHomesInit, tableGlobalsInit, frameRec, FR_VN, FR_IP, FR_P, NO_HOME } from "./tables/index";
import { controlInit } from "./control";
import { l3Init } from "./tables/l3";
import { accessFrame } from "./pipeline/access";
import { accessFast, underlayFast } from "./pipeline/fast";
import { prefetchBatch } from "./pipeline/prefetch";
import { underlayFrame } from "./pipeline/underlay";
import { resetOut, setCurIn, outCount } from "./pipeline/emit";
import { drop, dropNoPort, setCur } from "./pipeline/common";
import { D_FRAME_TOO_LONG, D_UNKNOWN_PORT, NUM_DROPS } from "./drops";
import { offloadFix, OFFLOAD_OK } from "./pipeline/offload";
import { wholeBegin, wholeDisarm, wholeEnd } from "./pipeline/gso";
import { puntInit, puntReset, puntTotal } from "./pipeline/punt";
import { aclInit } from "./pipeline/acl";
import { qosInit } from "./pipeline/qos";
import { gleanInit, learnReset } from "./pipeline/glean";

export { dropNamesPtr, dropNamesLen } from "./drops";
export { setPort, setUnderlay, setVn, delVn, setTag, setRemote, delRemote, setVtep, setFlood, buildTunnel,
         setMacLocal, setMacRemote, delMac, getMac, setIp, delIp, setPrefix, purgeVn } from "./control";
export { setPrefixCount } from "./tables/index";
export { setNextHops } from "./pipeline/nexthop";
export { setL3Domain, delL3Domain, setL3Vn, setL3Tunnel, delL3Tunnel } from "./tables/l3";
export { setTrace, setFastPaths } from "./pipeline/common";
export { puntPtr, puntCount, puntLost, puntTotal } from "./pipeline/punt";
export { setAclRule, setAcl, aclRuleHitsPtr, aclVnPtr } from "./pipeline/acl";
export { setQos, clockPtr } from "./pipeline/qos";
export { setGlean, setLearnFull, setMacGleaned, learnPtr, learnCount, learnLost } from "./pipeline/glean";
export { setPortGso, gsoWhole } from "./pipeline/gso";
export { imageExpand } from "./control";

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
  aclInit();
  qosInit();
  gleanInit();
  ready = true;
}

export function setWorstFanout(n: u32): void { worstFanout = n; }

// The batch's first pass (each frame parsed once, its slots touched) and its
// sink: pipeline/prefetch.ts.
export { warmSink } from "./pipeline/prefetch";

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
  const p = slotBase + <usize>i * SLOT_SIZE + off;
  // segment 0 of a super-frame that may go whole (pipeline/gso.ts)
  if ((fl & IF_GSO_WHOLE) != 0) wholeBegin(p, off, len, port, fl);
  const why = offloadFix(p, len, off, fl);
  // fixed: process() resets the frame's prefetch record, made before the fix
  if (why == OFFLOAD_OK) return false;
  wholeDisarm();
  setCur(port, -1);
  const pc = portCtr + (<usize>port * PORT_CTR << 3);
  ctrInc(pc, PC_RX_FRAMES, 1);
  ctrInc(pc, PC_RX_BYTES, len);
  drop(why);
  return true;
}

/**
 * The access side's common cases (fast.ts accessFast) for frame i, from
 * access port `port` (descriptor at d): 1 when the fast path forwarded the
 * frame, 2 when it was an ARP request suppression answered (suppress.ts
 * arpAnswerAt, which accessFast calls: fifth round, inlined into process,
 * hot ARP reply 39.9 -> 36.4 ns; sixth round, called where accessFast has
 * the EtherType, no longer tried after accessFast declined, 4 % more), with
 * the same outputs and counters slowFrame would give; 0, having written
 * nothing, for slowFrame to take it.
 */
@inline function accessFrameFast(i: u32, len: u32, port: u32): u32 {
  // The frame's address as the prefetch pass computed it (tables/index.ts
  // FR_P), loaded, not rebuilt from i and off: the fast paths use it only
  // for a frame that pass parsed (FR_VN, or the underlay VN at +0), which it
  // does only after its own descriptor checks (off + len within the slot;
  // pipeline/prefetch.ts), so they are not made again here.
  const rec = frameRec(i);
  const r = accessFast(port, <usize>load<u32>(rec, FR_P), len, rec);
  if (r == 0) return 0;
  ctrInc2(portCtr + (<usize>port * PORT_CTR << 3), PC_RX_FRAMES, 1, len); // and PC_RX_BYTES
  return r;
}

/** The underlay side's common case (fast.ts underlayFast): as accessFrameFast. */
@inline function underlayFrameFast(i: u32, len: u32, port: u32): bool {
  const rec = frameRec(i);
  if (!underlayFast(<usize>load<u32>(rec, FR_P), len, rec)) return false;
  ctrInc2(portCtr + (<usize>port * PORT_CTR << 3), PC_RX_FRAMES, 1, len); // and PC_RX_BYTES
  return true;
}

export function process(n: u32): u32 {
  resetOut();
  puntReset();
  learnReset();
  if (n > MAX_BATCH) n = MAX_BATCH;
  prefetchBatch(n);
  // The batch-wide counters are added once per batch (the host reads them
  // only between batches): three fewer read-modify-writes per frame.
  let forwarded: u32 = 0;
  let fast: u32 = 0;
  let i: u32 = 0;
  // Two loops (issue 18): the inner one runs the fast paths and the ARP
  // answer frame after frame, with no call on its way but the flood's
  // copies; a frame they decline, or one with offloads to finish, leaves it
  // for the outer one, which makes the calls (offloadFrame, slowFrame,
  // wholeEnd). V8's wasm calls save no register, so with those calls in
  // the one loop TurboFan kept the loop's values (i, the counts) on the
  // stack for every frame. The same outputs and counters as one loop: a
  // frame with offloads never took a fast path (its record is reset).
  // The inner loops are two, one per port kind (issue 18, sixth round): the
  // access loop does not carry the decapsulation's code, nor the underlay
  // loop the encapsulation's, flood's and ARP answer's; a batch comes from
  // one port. Hot encap 30.75 -> 30.0 ns, cold 37.0 -> 35.9, hairpin
  // 21.7 -> 21.2 / 27.8 -> 27.1, decap unchanged (two A/B pairs in one run,
  // the firmware's Node 22, load 4-5; bench/README.md, sixth round).
  while (true) {
    // access frames: the fast paths and the ARP answer
    for (; i < n; i++) {
      if (outCount + worstFanout > MAX_OUT) break;
      // The descriptor as one 8-byte load (abi.ts: I_OFF 0, I_LEN 2, I_PORT
      // 4, I_FLAGS 6, little-endian), its fields shifted out: V8 13.6
      // compiled each 16-bit field compared with a constant as a load and a
      // compare that loaded it again (issue 18, session 10).
      const dw = load<u64>(inDescBase + (<usize>i << 3));
      if ((dw >> 48) != 0) break; // I_FLAGS
      // No port-kind test (issue 18, session 10): accessFast takes only a
      // frame the prefetch pass marked (FR_VN), which it does for an access
      // port's frame alone, after its own port checks; any other frame is
      // declined, writing nothing, and the underlay loop or the full path
      // takes it, as when this loop stopped at its port's kind.
      const port = <u32>(dw >> 32) & 0xffff;
      setCurIn(i); // the input index every output and trace record carries
      const r = accessFrameFast(i, <u32>dw >> 16, port); // I_LEN
      if (r == 1) fast++;
      else if (r == 2) forwarded++;
      else break; // declined, having written nothing: the full path
    }
    // underlay frames: the decapsulation's fast path
    const u0 = i;
    for (; i < n; i++) {
      if (outCount + worstFanout > MAX_OUT) break;
      const dw = load<u64>(inDescBase + (<usize>i << 3)); // as the access loop
      if ((dw >> 48) != 0) break;
      const port = <u32>(dw >> 32) & 0xffff;
      if (port >= MAX_PORTS) break;
      if (load<u8>(portKind + port) != PORT_UNDERLAY) break;
      setCurIn(i);
      if (underlayFrameFast(i, <u32>dw >> 16, port)) fast++;
      else break;
    }
    if (i >= n) break;
    // the underlay loop took frames and stopped at another port's frame (or
    // one it declined, which it declines again, writing nothing): back to
    // the access loop; else neither loop takes frame i: the full path
    if (i != u0) continue;
    if (outCount + worstFanout > MAX_OUT) break;
    setCurIn(i);
    const fl = <u32>load<u16>(inDescBase + (<usize>i << 3), I_FLAGS);
    if (fl != 0) {
      const before = outCount;
      if (!offloadFrame(i, fl)) {
        // offloadFix may have rewritten header bytes the prefetch pass judged (a
        // GSO segment's lengths and checksums; a fuzzed csum_offset landing in
        // a VXLAN VNI): the frame's whole record is reset (both homes and the
        // IP home NO_HOME, no fast-path VN), so the fast paths (the ARP answer too)
        // decline it and the full path parses the fixed frame
        const rec = frameRec(i);
        store<u64>(rec, 0xffffffffffffffff);
        store<u64>(rec, <u64>NO_HOME << 32, FR_VN);
        forwarded += slowFrame(i);
        if ((fl & IF_GSO_WHOLE) != 0) wholeEnd(before, outCount);
      }
    } else forwarded += slowFrame(i);
    i++;
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
    case 17: return IF_GSO_WHOLE;
    default: return 0;
  }
}
void outDescBase; void HEADROOM;
