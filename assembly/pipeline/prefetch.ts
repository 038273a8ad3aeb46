// The batch's first pass (VPP's prefetch stage): each frame parsed once, its
// VN and the table slots the main pass will look up written to the frame's
// record (tables/index.ts frameRec), and those slots touched so that the
// cache misses of the 256 frames overlap instead of queuing one behind the
// other in the main pass. Reads only inside the frame and the tables.
import { I_OFF, I_LEN, I_PORT, SLOT_SIZE } from "../abi";
import { slotBase, inDescBase, portKind, vlanMap, vnPtr, MAX_PORTS, PORT_ACCESS, PORT_UNDERLAY,
         VN_FLAGS, VN_MTU, VNF_PORTSEC, VNF_ARPSUP } from "../state";
import { ARP_LEN, ARP_SPA, ARP_TPA } from "../proto/arp";
import { ETHERTYPE_IPV4, ETHERTYPE_ARP, DOT1Q_HLEN, VID_MASK, dot1qTagged, dot1qTci, dot1qTypeRaw,
         isTagTypeRaw } from "../proto/ethernet";
import { IP4_SRC } from "../proto/ipv4";
import { raw16 } from "../util";
import { macKey, macRaw, macHomes, warmList, NO_HOME, macBase, macHome, ip4Home, ipBase, ipWarmList,
         FR_SIZE, FR_IP, FR_P } from "../tables/index";
import { underlayShape, underlayInner } from "./fast";

/** Kept so the warming loads of prefetchBatch are not optimised away (exported by index.ts). */
export let warmSink: u64 = 0;

/**
 * Appends to the warm list (at w) the IP-table slots the main pass will read
 * for the frames listed from ipWarmList to q: the source IP of IPv4 under
 * port security (seed §5), the target and the sender of an ARP request under
 * suppression and port security (RFC 9161); the first of them (the IPv4
 * source, or the ARP target) is kept in the frame's record for the lookup.
 * Returns the new end of the list.
 */
function warmIpSlots(q: usize, w: usize): usize {
  for (let r = ipWarmList; r < q; r += 4) {
    const x = load<u32>(r);
    const i = x & 0xffff;
    const vn = (x >> 16) - 1;
    const len = <u32>load<u16>(inDescBase + (<usize>i << 3), I_LEN);
    const rec = macHomes + (<usize>i * FR_SIZE);
    // the frame's address, as the first loop stored it (a listed frame passed its checks)
    const p = <usize>load<u32>(rec, FR_P);
    const flags = <u32>load<u8>(vnPtr(vn), VN_FLAGS);
    const et = dot1qTypeRaw(p);
    if (et == raw16(ETHERTYPE_IPV4)) {
      if ((flags & VNF_PORTSEC) != 0) {
        if (len >= DOT1Q_HLEN + 20) {
          const h = ip4Home(vn, p + DOT1Q_HLEN + IP4_SRC);
          store<u32>(rec, h, FR_IP);
          store<u32>(w, <u32>(ipBase + (<usize>h << 5)));
          w += 4;
        }
      }
    } else if (et == raw16(ETHERTYPE_ARP)) {
      if (len >= DOT1Q_HLEN + ARP_LEN) {
        if ((flags & VNF_ARPSUP) != 0) {
          const h = ip4Home(vn, p + DOT1Q_HLEN + ARP_TPA);
          store<u32>(rec, h, FR_IP);
          store<u32>(w, <u32>(ipBase + (<usize>h << 5)));
          w += 4;
        }
        if ((flags & VNF_PORTSEC) != 0) {
          const h = ip4Home(vn, p + DOT1Q_HLEN + ARP_SPA);
          // kept in the destination's place, which a broadcast request never
          // looks up (suppress.ts arpAnswerAt reads it only then)
          if ((<u32>macRaw(p) & 1) != 0) store<u32>(rec, h, 4);
          store<u32>(w, <u32>(ipBase + (<usize>h << 5)));
          w += 4;
        }
      }
    }
  }
  return w;
}

/**
 * The first pass over the batch. Each frame's record (tables/index.ts) gets
 * its two MAC homes (an underlay frame: its VN and its inner destination's
 * home), the VN of an access frame with the fast path's 802.1Q shape (the
 * main pass does not parse the tag again: issue 16's parse once), and the IP
 * home of warmIpSlots.
 */
// Two phases: first every slot the batch will look up (no misses: descriptors,
// frames and the VLAN map are in cache), then a tight loop of loads only. A
// loop that interleaves the hashing with the loads keeps few misses in flight
// (the reorder buffer holds only a few of its long iterations); the load-only
// loop issues as many as the core's miss buffers take, and the fewer
// instructions it spends per load, the more of its loads fit in the reorder
// buffer at once: so the first phase lists the slots' addresses densely
// (warmList) and the second is unrolled by eight (bench/README.md finding 14).
export function prefetchBatch(n: u32): void {
  const base = macBase;
  const hp = macHomes;
  const wl = warmList;
  let w: usize = wl;
  let q: usize = ipWarmList; // access frames whose VN checks IP bindings: (vn + 1) << 16 | i (both fit 16 bits)
  for (let i: u32 = 0; i < n; i++) {
    // the frame's two homes and its fast-path VN + 1, written once at the end (NO_HOME, 0: none)
    let h0: u32 = NO_HOME;
    let h1: u32 = NO_HOME;
    let fv: u32 = 0;
    let fp: u32 = 0; // the frame's address (FR_P), once its descriptor passed the checks
    do {
      const d = inDescBase + (<usize>i << 3);
      const off = <u32>load<u16>(d, I_OFF);
      const len = <u32>load<u16>(d, I_LEN);
      const port = <u32>load<u16>(d, I_PORT);
      if (port >= MAX_PORTS) break; // one `if` per check (pipeline/fast.ts)
      if (len < DOT1Q_HLEN) break;
      if (off + len > SLOT_SIZE) break;
      const k = load<u8>(portKind + port);
      const p = slotBase + <usize>i * SLOT_SIZE + off;
      fp = <u32>p;
      if (k == PORT_ACCESS) {
        if (!dot1qTagged(p)) break;
        const vid = dot1qTci(p) & VID_MASK;
        const vn1 = <u32>load<u16>(vlanMap + ((<usize>port << 12) + vid) * 2);
        if (vn1 == 0) break;
        h0 = macHome(macKey(vn1 - 1, macRaw(p + 6)));
        store<u32>(w, <u32>(base + (<usize>h0 << 4)));
        w += 4;
        // A group destination (broadcast, multicast) is looked up nowhere:
        // the fast path and access.ts flood it, so its home is neither
        // computed nor warmed (issue 18: a hash and a load per flooded frame
        // and ARP request, which the native's first pass does not make).
        const dst = macRaw(p);
        if ((<u32>dst & 1) == 0) {
          h1 = macHome(macKey(vn1 - 1, dst));
          store<u32>(w, <u32>(base + (<usize>h1 << 4)));
          w += 4;
        }
        // fast.ts accessFast's shape: one tag, a non-zero VID, within the VN's MTU
        if (!isTagTypeRaw(dot1qTypeRaw(p))) {
          if (vid != 0) {
            if (len - DOT1Q_HLEN <= <u32>load<u16>(vnPtr(vn1 - 1), VN_MTU)) fv = vn1;
          }
        }
        // The IP-table slots the main pass will read, listed in a second loop
        // (warmIpSlots): in this one, their hashing made the common path spill
        // (bench/README.md finding 18).
        if ((<u32>load<u8>(vnPtr(vn1 - 1), VN_FLAGS) & (VNF_PORTSEC | VNF_ARPSUP)) != 0) {
          store<u32>(q, (vn1 << 16) | i);
          q += 4;
        }
      } else if (k == PORT_UNDERLAY) {
        // A frame of the shape the fast path takes (pipeline/fast.ts
        // underlayShape, every check made here once): its VN, kept in the
        // source's place, and its inner destination's slot (the main pass
        // uses the home only for that VN).
        const vn = underlayShape(p, len);
        if (vn < 0) break;
        h0 = <u32>vn;
        h1 = macHome(macKey(<u32>vn, macRaw(underlayInner(p))));
        store<u32>(w, <u32>(base + (<usize>h1 << 4)));
        w += 4;
      }
    } while (false);
    const rec = hp + (<usize>i * FR_SIZE);
    store<u64>(rec, <u64>h0 | (<u64>h1 << 32));
    store<u64>(rec, <u64>fv | (<u64>NO_HOME << 32), 8);
    store<u32>(rec, fp, FR_P);
  }
  w = warmIpSlots(q, w);
  let s0 = i64x2.splat(0), s1 = i64x2.splat(0), s2 = i64x2.splat(0), s3 = i64x2.splat(0);
  // last slot first: the first frames' slots, loaded last, are still in L1
  // when the main pass starts with them. Each slot is loaded as a v128 (16
  // bytes, within its 16- or 32-byte slot): on this bench's CPU (AMD Zen 5
  // under KVM) a stream of vector loads keeps more misses in flight than
  // one of 64-bit loads into general registers, 2.5-2.8 against 3.9-4.0 ns
  // per line for 512 lines of a 32 MiB table, prefetch 2.4-2.7
  // (bench/native/mlp.c; bench/README.md, fourth round). TurboFan keeps
  // every load: vmovdqu + vpxor per slot.
  let r = w;
  for (; r >= wl + 32; r -= 32) {
    s0 = v128.xor(s0, v128.load(<usize>load<u32>(r - 4)));
    s1 = v128.xor(s1, v128.load(<usize>load<u32>(r - 8)));
    s2 = v128.xor(s2, v128.load(<usize>load<u32>(r - 12)));
    s3 = v128.xor(s3, v128.load(<usize>load<u32>(r - 16)));
    s0 = v128.xor(s0, v128.load(<usize>load<u32>(r - 20)));
    s1 = v128.xor(s1, v128.load(<usize>load<u32>(r - 24)));
    s2 = v128.xor(s2, v128.load(<usize>load<u32>(r - 28)));
    s3 = v128.xor(s3, v128.load(<usize>load<u32>(r - 32)));
  }
  for (; r > wl; r -= 4) s0 = v128.xor(s0, v128.load(<usize>load<u32>(r - 4)));
  const s = v128.xor(v128.xor(s0, s1), v128.xor(s2, s3));
  warmSink = i64x2.extract_lane(s, 0) ^ i64x2.extract_lane(s, 1);
}
