// The VN profile's QoS (PROTOCOL.md §5 `qos`, seed §4.5):
// - `qos.pcp`: the PCP of every frame delivered to the VN's VNICs. Without
//   it a decapsulated frame takes the outer DSCP's class (DSCP >> 3), the
//   encapsulator's mapping (PCP << 3, pipeline/encap.ts) in reverse, and a
//   locally switched frame keeps its own PCP.
// - `qos.rateMbps` / `qos.burstKb`: a token bucket (RFC 2697's committed
//   bucket, one rate, one depth) on the traffic from each VNIC, dropping what
//   exceeds it as `policed`. One bucket per VNIC: the host gives each local
//   MAC its VNIC's policer index (mac.local `vnic`, host/dataplane/dataplane.ts),
//   kept in the MAC entry's spare word, so a VNIC's MACs in the VN share one
//   bucket; gleaned bindings are the VAP's own (PROTOCOL.md §5 learn: glean),
//   so a (VN, port) VAP has one bucket for all of them. A local MAC programmed
//   without an index keeps a bucket of its own. Each packet I/O worker has its
//   own buckets (README: N workers police at up to N times the rate).
//
// Time: the host writes its monotonic clock (ms, f64) at clockPtr() before
// each batch (host/dataplane/dataplane.ts process), so no call per frame.
import { alloc, vnPtr, MAX_VNS, VN_PCP, VN_FEAT, FEAT_POLICE } from "../state";
import { mix64 } from "../util";
import { macKey, macFindFrom, macHome } from "../tables/index";

// bucket keys beside the MAC-table keys ((vn + 1) << 48 | MAC, below bit 63)
const POL_KEY: u64 = 0x8000000000000000; // | vn << 32 | VNIC index (1..2^31-1)
const POL_VAP: u64 = 0x80000000;         // | port: a VAP's gleaned bindings

const BUCKET: u32 = 32; // u64 key (0 = empty) | f64 tokens (bytes) | f64 last refill (ms) | spare
const BUCKETS_LOG2: u32 = 16;
const BUCKETS_LIMIT: u32 = (1 << BUCKETS_LOG2) - (1 << (BUCKETS_LOG2 - 3));

let clock: usize = 0; // f64 ms, written by the host
let perVn: usize = 0; // MAX_VNS x 16: f64 rate (bytes per ms), f64 depth (bytes)
let buckets: usize = 0;
let bucketCount: u32 = 0;

export function qosInit(): void {
  clock = alloc(8);
  perVn = alloc(<usize>MAX_VNS * 16);
  buckets = alloc(<usize>BUCKET << BUCKETS_LOG2);
}

export function clockPtr(): usize { return clock; }
@inline export function nowMs(): f64 { return load<f64>(clock); }

/**
 * VN vn's QoS: pcp 0..7 or 8 for none; rate in bytes per ms and depth in
 * bytes (rate 0: no policer). The buckets of the VN start full again.
 */
export function setQos(vn: u32, pcp: u32, rate: f64, depth: f64): i32 {
  if (vn >= MAX_VNS || pcp > 8) return 2;
  const e = vnPtr(vn);
  store<u8>(e, <u8>(pcp < 8 ? pcp + 1 : 0), VN_PCP);
  const q = perVn + <usize>vn * 16;
  store<f64>(q, rate);
  store<f64>(q, depth, 8);
  const f = <u32>load<u8>(e, VN_FEAT) & ~FEAT_POLICE;
  store<u8>(e, <u8>(rate > 0 ? f | FEAT_POLICE : f), VN_FEAT);
  // a new rate or depth starts from full buckets: forget every bucket
  // (they are few, and a profile change is rare)
  memory.fill(buckets, 0, <usize>BUCKET << BUCKETS_LOG2);
  bucketCount = 0;
  return 0;
}

/** The TCI bits (PCP << 13) of a frame delivered to a VNIC of vn: qos.pcp, else `given`. */
@inline export function deliverPcp(v: usize, given: u32): u32 {
  const p = <u32>load<u8>(v, VN_PCP);
  return p != 0 ? (p - 1) << 13 : given;
}

/**
 * The bucket key of a frame from local source MAC `mac` in VN vn, arriving
 * on `port`: its VNIC's (the index in the MAC entry's spare word), its VAP's
 * for a gleaned binding, else the MAC's own. Only called when the VN polices.
 */
export function policerKey(vn: u32, port: u32, mac: u64, gleaned: bool): u64 {
  if (gleaned) return POL_KEY | (<u64>vn << 32) | POL_VAP | <u64>port;
  const key = macKey(vn, mac);
  const s = macFindFrom(key, macHome(key));
  const id = s != 0 ? load<u32>(s, 12) : 0;
  return id != 0 ? POL_KEY | (<u64>vn << 32) | <u64>id : key;
}

/**
 * Takes `bytes` from the bucket `key` (policerKey) in VN vn: true when they fit. A source seen first gets a full bucket;
 * a full table starts over with every bucket full (bounded memory; the
 * sources are the VN's local VNICs, so it does not fill in practice).
 */
export function police(vn: u32, key: u64, bytes: u32): bool {
  const q = perVn + <usize>vn * 16;
  const rate = load<f64>(q);
  const depth = load<f64>(q, 8);
  const now = nowMs();
  const mask: u32 = (1 << BUCKETS_LOG2) - 1;
  let i = <u32>mix64(key) & mask;
  let s: usize;
  while (true) {
    s = buckets + <usize>i * BUCKET;
    const k = load<u64>(s);
    if (k == key) break;
    if (k == 0) {
      if (bucketCount >= BUCKETS_LIMIT) {
        memory.fill(buckets, 0, <usize>BUCKET << BUCKETS_LOG2);
        bucketCount = 0;
        return police(vn, key, bytes);
      }
      bucketCount++;
      store<u64>(s, key);
      store<f64>(s, depth, 8);
      store<f64>(s, now, 16);
      break;
    }
    i = (i + 1) & mask;
  }
  let tokens = load<f64>(s, 8);
  const last = load<f64>(s, 16);
  if (now > last) {
    tokens += (now - last) * rate;
    if (tokens > depth) tokens = depth;
    store<f64>(s, now, 16);
  }
  const b = <f64>bytes;
  if (tokens < b) { store<f64>(s, tokens, 8); return false; }
  store<f64>(s, tokens - b, 8);
  return true;
}
