// Where every table lives in linear memory. init() lays them out once with
// the stub allocator (which never frees), so pointers stay valid for the
// life of the instance and the host may keep them (assembly/abi.ts).
import { SLOT_SIZE, MAX_BATCH, IN_DESC, OUT_DESC, HDR_SLOT, MAX_OUT } from "./abi";
import { NUM_DROPS } from "./drops";

export const MAX_PORTS: u32 = 64;
export const MAX_VNS: u32 = 16384;
export const MAX_REMOTES: u32 = 4096;
export const MAX_LOCAL_PER_VN: u32 = 56;
export const VN_SIZE: u32 = 256;
export const TUN_SIZE: u32 = 128;
export const TUN_HDR: u32 = 16; // template bytes start here inside a tunnel entry
export const SCRATCH_SIZE: u32 = 16384;
export const PORT_CTR: u32 = 8; // u64 counters per port
export const VN_CTR: u32 = 8; // u64 counters per VN
export const TRACE_REC: u32 = 32;

// port kinds
export const PORT_NONE: u8 = 0;
export const PORT_ACCESS: u8 = 1;
export const PORT_UNDERLAY: u8 = 2;

// encapsulations (VN entry byte 4)
export const ENC_NONE: u32 = 0;
export const ENC_VXLAN: u32 = 1;
export const ENC_GENEVE: u32 = 2;
export const ENC_NVGRE: u32 = 3;

// VN entry layout
export const VN_VNI: u32 = 0;
export const VN_ENCAP: u32 = 4;
export const VN_FLAGS: u32 = 5;
export const VN_DSCP: u32 = 6;
export const VN_NLOCAL: u32 = 7;
export const VN_MTU: u32 = 8;
export const VN_PCP: u32 = 10; // qos.pcp + 1; 0 = none (pipeline/qos.ts)
export const VN_FEAT: u32 = 11; // FEAT_*: the profile parts the fast paths leave to the full path or check (qos.ts, acl.ts, glean.ts)
export const VN_FLOOD_PTR: u32 = 12;
export const VN_FLOOD_N: u32 = 16;
export const VN_SALT: u32 = 24; // u64: mix64(vn + 1), the inner half of the IP table's hash of this VN's addresses (tables/index.ts ip4Home), written by setVn
export const VN_LOCAL: u32 = 32; // MAX_LOCAL_PER_VN x u32 (port << 16 | tag)
export const VNF_PORTSEC: u32 = 1;
export const VNF_ARPSUP: u32 = 2;
export const VNF_DSCP_FIXED: u32 = 4;
export const VNF_LIVE: u32 = 8;
export const FEAT_ACL_FROM: u32 = 1; // ACL rules (or a deny default) for frames from the VN's VNICs
export const FEAT_ACL_TO: u32 = 2; // ... and for frames to them
export const FEAT_POLICE: u32 = 4; // qos.rateMbps: a policer per VNIC
export const FEAT_GLEAN: u32 = 8; // learn: glean

// counters per port / per VN (u64 index inside the record)
export const PC_RX_FRAMES: u32 = 0;
export const PC_RX_BYTES: u32 = 1;
export const PC_TX_FRAMES: u32 = 2;
export const PC_TX_BYTES: u32 = 3;
export const PC_DROPS: u32 = 4;
export const VC_RX: u32 = 0;
export const VC_TX: u32 = 1;
export const VC_ENCAP: u32 = 2;
export const VC_DECAP: u32 = 3;
export const VC_FLOOD: u32 = 4;
export const VC_DROPS: u32 = 5;

// global counters
export const GC_RX: u32 = 0;
export const GC_FORWARDED: u32 = 1;
export const GC_OUTPUTS: u32 = 2;
export const GC_DROPPED: u32 = 3;

export let slotBase: usize = 0;
export let inDescBase: usize = 0;
export let outDescBase: usize = 0;
export let hdrBase: usize = 0;
export let scratch: usize = 0;
export let portKind: usize = 0; // MAX_PORTS bytes
export let vlanMap: usize = 0; // MAX_PORTS x 4096 x u16: VN index + 1, 0 = none
export let vnBase: usize = 0; // MAX_VNS x VN_SIZE
export let tunBase: usize = 0; // tunnels x TUN_SIZE
export let tunCap: u32 = 0;
export let floodPool: usize = 0; // u32 tunnel indices, sub-allocated by the host
export let floodPoolCap: u32 = 0;
export let vtepBits: usize = 0; // MAX_VNS x MAX_REMOTES bits: remote r is on VN v's flood list
export let vnPortTag: usize = 0; // MAX_VNS x MAX_PORTS x u16: the VN's tag on that port now, 0 = none
export let globalCtr: usize = 0;
export let dropCtr: usize = 0;
export let portCtr: usize = 0;
export let vnCtr: usize = 0;
export let traceBase: usize = 0;

/**
 * Zeroed memory, cache-line aligned. No memory.fill: the stub runtime's bump
 * allocator hands out memory never used before (nothing here frees: heap.free
 * is never called), and memory.grow's new pages are zero (WebAssembly spec,
 * "grow" zero-fills). Filling would write every page of the ~110 MB of tables
 * at create() and fault it in (issue 4: restart time); untouched pages stay
 * unmapped until a binding lands there.
 */
function alloc(size: usize): usize {
  const p = heap.alloc(size + 64);
  return (p + 63) & ~<usize>63;
}

export function layoutFixed(tunLog2: u32, floodCap: u32): void {
  slotBase = alloc(<usize>SLOT_SIZE * MAX_BATCH);
  inDescBase = alloc(<usize>IN_DESC * MAX_BATCH);
  outDescBase = alloc(<usize>OUT_DESC * MAX_OUT);
  hdrBase = alloc(<usize>HDR_SLOT * MAX_OUT);
  scratch = alloc(SCRATCH_SIZE);
  portKind = alloc(MAX_PORTS);
  vlanMap = alloc(<usize>MAX_PORTS * 4096 * 2);
  vnBase = alloc(<usize>MAX_VNS * VN_SIZE);
  tunCap = 1 << tunLog2;
  tunBase = alloc(<usize>tunCap * TUN_SIZE + 128);
  floodPoolCap = floodCap;
  floodPool = alloc(<usize>floodCap * 4);
  vtepBits = alloc(<usize>MAX_VNS * MAX_REMOTES / 8);
  vnPortTag = alloc(<usize>MAX_VNS * MAX_PORTS * 2);
  globalCtr = alloc(8 * 8);
  dropCtr = alloc(<usize>NUM_DROPS * 8);
  portCtr = alloc(<usize>MAX_PORTS * PORT_CTR * 8);
  vnCtr = alloc(<usize>MAX_VNS * VN_CTR * 8);
  traceBase = alloc(<usize>MAX_BATCH * TRACE_REC);
}

export { alloc };

@inline export function vnPtr(vn: u32): usize { return vnBase + <usize>vn * VN_SIZE; }
@inline export function tunPtr(t: u32): usize { return tunBase + <usize>t * TUN_SIZE; }
@inline export function ctrInc(base: usize, idx: u32, by: u64): void {
  const p = base + (<usize>idx << 3);
  store<u64>(p, load<u64>(p) + by);
}
/**
 * Two adjacent counters (idx, idx + 1: a port's frames and bytes) added in
 * one 16-byte read-modify-write (issue 18, sixth round).
 */
@inline export function ctrInc2(base: usize, idx: u32, a: u64, b: u64): void {
  const p = base + (<usize>idx << 3);
  v128.store(p, i64x2.add(v128.load(p), i64x2.replace_lane(i64x2.splat(a), 1, b)));
}
/** The tag VN vn uses on port now (0: the VAP is disconnected). */
@inline export function tagOf(vn: u32, port: u32): u32 {
  return <u32>load<u16>(vnPortTag + ((<usize>vn * MAX_PORTS + port) << 1));
}

@inline export function vtepAllowed(vn: u32, r: u32): bool {
  const bit = <usize>vn * MAX_REMOTES + r;
  return (load<u8>(vtepBits + (bit >> 3)) & (<u8>1 << <u8>(bit & 7))) != 0;
}
