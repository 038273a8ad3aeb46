// Local tags of one NVE port (RFC 8394 §3 VAP Local_Tag; Req-2, Req-7): one
// 802.1Q VID per (port, VN), shared by every VNIC and every End Device behind
// the port. A freed tag is quarantined for `tagQuarantineMs` so frames still in
// flight with the old VID cannot leak into a VN that would reuse it.
import type { QuarantineRecord } from "../store/store.js";

export const MIN_TAG = 1;
export const MAX_TAG = 4094; // 0 = priority tag, 4095 reserved (IEEE 802.1Q)

export class TagAllocator {
  /** tag → VN of Connected VAPs */
  readonly tags = new Map<number, number>();
  /** tag → quarantine (absolute deadline) */
  readonly quarantine = new Map<number, { vn: number; until: number }>();

  constructor(readonly port: string) {}

  /** Grantable to `vn`: not another VN's and not quarantined for another VN (the same VN may take its old tag back). */
  available(tag: number, vn: number, now: number): boolean {
    const owner = this.tags.get(tag);
    if (owner !== undefined) return owner === vn;
    const q = this.quarantine.get(tag);
    return !q || q.until <= now || q.vn === vn;
  }

  /** The lowest tag grantable to `vn`, skipping `skip` (tags taken by the same transaction). */
  lowest(vn: number, now: number, skip: Set<number>): number | undefined {
    for (let t = MIN_TAG; t <= MAX_TAG; t++) {
      if (skip.has(t) || this.tags.has(t)) continue;
      const q = this.quarantine.get(t);
      if (q && q.until > now && q.vn !== vn) continue;
      return t;
    }
    return undefined;
  }

  take(tag: number, vn: number): void {
    this.tags.set(tag, vn);
    this.quarantine.delete(tag);
  }

  release(tag: number, q?: QuarantineRecord): void {
    this.tags.delete(tag);
    if (q) this.quarantine.set(tag, { vn: q.vn, until: q.until });
  }

  used(): number {
    return this.tags.size;
  }
}
