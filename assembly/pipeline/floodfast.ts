// The fast path's head-end replication (fast.ts floodFast): one encapsulated
// copy of an access frame per remote NVE on the VN's flood list, over an IPv4
// underlay (every tunnel on the list is an IPv4 one). The same outputs and
// counters as emitEncap4 (encap.ts) once per copy, written for a loop of
// copies (issue 18, flood-8 was the worst ratio against the native):
//   - inlined into process() (issue 18, session 11: under the firmware's
//     Node 24, whose Turboshaft allocates the loop's registers well inside
//     process(), and whose wasm calls save no register, the call cost more
//     than the smaller function saved: flood-8 cold 74.0 -> 70.5 ns, hot
//     70.6 -> 67.0, the other paths unchanged; out of line was the better
//     choice under V8 11.3's TurboFan, bench/README.md item 24);
//   - the output cursor and the input index in locals, written back once
//     (emit.ts keeps them in globals, which V8 loads and stores on every use);
//   - what is the same for every copy computed once: the byte-swapped UDP
//     length, source port and IPv4 total lengths, the out-desc's second half;
//   - the transmit counters added once per run of copies on the same port
//     and once per frame on the VN (the host reads counters only between
//     batches, so the sums are the same when it does).
import { HDR_SLOT, OUT_DESC } from "../abi";
import { hdrBase, outDescBase, portCtr, vnCtr, tunPtr, ctrInc, PORT_CTR, VN_CTR, PC_TX_FRAMES, PC_TX_BYTES,
         VC_TX, TUN_HDR } from "../state";
import { copy64, csumFold32 } from "../util";
import { outCount, curIn, setOutCount } from "./emit";
import { TK_NVGRE4 } from "./encap";
import { nextHopPick } from "./nexthop";
import { SPORT_BASE, SPORT_MASK } from "../proto/udp";

/** A 16-bit value as its network-order bytes read little-endian (store<u16> keeps the low 16 bits). */
@inline function sw16(v: u32): u32 { return ((v << 8) | (v >> 8)) & 0xffff; }

// The per-frame values every copy uses, kept in memory at a fixed address
// rather than in locals: TurboFan schedules a pure value next to its uses,
// inside the loop, and recomputed the source port, the UDP length and their
// byte swaps for every copy (bench/README.md finding 17 met the same with the
// flow hash); a load from a constant address costs one instruction and no
// register.
const INV_MAC0: usize = 0; // u64: the inner destination MAC and the source's first 2 bytes
const INV_MAC8: usize = 8; // u32: the source MAC's last 4 bytes
const INV_SPORT: usize = 12; // u16, network order: the UDP source port
const INV_ULEN: usize = 14; // u16, network order: the UDP length
const INV_D2: usize = 16; // u64: the out-desc's second half (data length, input index, VN)
const INV_TOT_UDP: usize = 24; // u32: the IPv4 total length over UDP
const INV_TOT_GRE: usize = 28; // u32: ... over GRE
const INV_TOS: usize = 32; // u32: the inner PCP as the outer class selector
const INV_DATA: usize = 36; // u32: the data piece (the inner frame from its EtherType)
const INV_HASH: usize = 40; // u32: the flow hash (nextHopPick)
const INV_BYTES: usize = 44; // u32: an output's bytes less its header length's variable part (12 + data length)
const inv: usize = memory.data(48, 16);

/**
 * emitEncap4 (encap.ts) of the 802.1Q-tagged frame at p (length len) through
 * each of the n tunnels listed (u32 tunnel indices) at `list`, with the
 * inner PCP `pcp` and flow hash `hash`, on VN vn. A tunnel with no next hop
 * (nexthop.ts) gets no copy, as there.
 */
@inline export function floodEncap4(list: usize, n: u32, p: usize, len: u32, pcp: u32, hash: u32, vn: u32): void {
  let o = outCount;
  const o0 = o;
  const innerLen = len - 4;
  const dataLen = len - 16;
  store<u64>(inv + INV_MAC0, load<u64>(p));
  store<u32>(inv + INV_MAC8, load<u32>(p, 8));
  // RFC 7348 §5 / RFC 8926: the UDP source port from the flow hash
  store<u16>(inv + INV_SPORT, <u16>sw16(SPORT_BASE | (hash & SPORT_MASK)));
  store<u16>(inv + INV_ULEN, <u16>sw16(16 + innerLen));
  store<u64>(inv + INV_D2, <u64>dataLen | (<u64>curIn << 16) | (<u64>vn << 32));
  store<u32>(inv + INV_TOT_UDP, 36 + innerLen);
  store<u32>(inv + INV_TOT_GRE, 28 + innerLen);
  store<u32>(inv + INV_TOS, pcp << 5); // RFC 2474 / seed §4.5
  store<u32>(inv + INV_DATA, <u32>(p + 16));
  store<u32>(inv + INV_HASH, hash);
  store<u32>(inv + INV_BYTES, 12 + dataLen);
  let runPort: u32 = 0xffffffff;
  let runFrames: u64 = 0;
  let runBytes: u64 = 0;
  // the list walked by its address: one loop value fewer than an index and
  // the list's base (V8 spilled both and reloaded them every copy)
  const end = list + (<usize>n << 2);
  for (let r = list; r < end; r += 4) {
    const e = tunPtr(load<u32>(r));
    const h = hdrBase + <usize>o * HDR_SLOT;
    copy64(h, e + TUN_HDR); // header (<= 50 bytes) + inner MACs fit in 64
    if (load<u8>(e, 9) != 0) { if (!nextHopPick(e, h, load<u32>(inv + INV_HASH))) continue; }
    const hl = <u32>load<u8>(e);
    store<u64>(h + hl, load<u64>(inv + INV_MAC0));
    store<u32>(h + hl, load<u32>(inv + INV_MAC8), 8);
    const fixed = (load<u8>(e, 8) & 1) != 0;
    const tos: u32 = fixed ? 0 : load<u32>(inv + INV_TOS);
    let tot: u32;
    if (<u32>load<u8>(e, 1) == TK_NVGRE4) {
      tot = load<u32>(inv + INV_TOT_GRE);
      store<u8>(h + 41, <u8>(load<u32>(inv + INV_HASH) >> 8)); // RFC 7637 §3.2: the FlowID
    } else {
      tot = load<u32>(inv + INV_TOT_UDP);
      store<u16>(h + 34, load<u16>(inv + INV_SPORT));
      store<u16>(h + 38, load<u16>(inv + INV_ULEN));
    }
    if (!fixed) store<u8>(h + 15, <u8>tos);
    store<u16>(h + 16, <u16>sw16(tot));
    const sum = csumFold32(<u32>load<u16>(e, 2) + tot + tos); // below 2^17 (encap.ts emitEncap4)
    store<u16>(h + 24, <u16>sw16(~sum & 0xffff));
    // emit.ts commit: the out-desc (port, header length, data pointer | the rest)
    const port = <u32>load<u16>(e, 10);
    const d = outDescBase + <usize>o * OUT_DESC;
    store<u64>(d, <u64>port | (<u64>(hl + 12) << 16) | (<u64>load<u32>(inv + INV_DATA) << 32));
    store<u64>(d, load<u64>(inv + INV_D2), 8);
    o++;
    if (port != runPort) {
      if (runFrames != 0) txCount(runPort, runFrames, runBytes);
      runPort = port;
      runFrames = 0;
      runBytes = 0;
    }
    runFrames++;
    runBytes += <u64>(hl + load<u32>(inv + INV_BYTES));
  }
  if (runFrames != 0) txCount(runPort, runFrames, runBytes);
  if (o != o0) ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_TX, <u64>(o - o0));
  setOutCount(o);
}

/** emit.ts commit's port counters for `frames` outputs of `bytes` bytes in all on `port`. */
@inline function txCount(port: u32, frames: u64, bytes: u64): void {
  const pc = portCtr + (<usize>port * PORT_CTR << 3);
  ctrInc(pc, PC_TX_FRAMES, frames);
  ctrInc(pc, PC_TX_BYTES, bytes);
}
