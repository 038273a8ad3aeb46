// One all-or-nothing change of the NVE's state (PROTOCOL.md §2). Handlers read
// the post-state through it and write whole VNIC records; finish() derives the
// rest: VAP transitions and tag allocation (RFC 8394 §3), the DpOps for exactly
// the bindings whose (port, active) or IP→MAC changed, and the store writes.
// Nothing outside the Txn (model, catalog) changes until commit(); undo() puts it back.
import type { DpOp } from "../dataplane/ops.js";
import { ProtocolError } from "../protocol/errors.js";
import type { Event } from "../protocol/types.js";
import type { CollectionName, HvRecord, QuarantineRecord, StoreWriter, TimerRecord, VnicRecord } from "../store/store.js";
import { copyVnic, keys } from "../store/store.js";
import { Model, ipKey, isConfigHv, macKey, splitVapKey, vapKey } from "./model.js";
import { countRanges } from "./ranges.js";
import type { VnConfig } from "../config/types.js";
import type { VnCatalog } from "./catalog.js";

/** What a transaction may take of what the End Devices share (core.ts builds it from the limits). */
export interface TxnGuard {
  maxPrefixesPerHv: number;
  /** the data plane's prefix table (assembly/tables/index.ts MAX_PREFIXES) */
  prefixCapacity: number;
  /** how many VNs (tags) `hv` may use on its port; undefined = no share (alone on the port) */
  tagShare(hv: string): number | undefined;
}

export type StoreOp = ["put", CollectionName, string, unknown] | ["del", CollectionName, string];

export function replay(tx: StoreWriter, ops: StoreOp[]): void {
  for (const o of ops) o[0] === "put" ? tx.put(o[1], o[2], o[3] as never) : tx.del(o[1], o[2]);
}

export interface Finished {
  readonly ops: DpOp[];
  readonly writes: StoreOp[];
  /** The writes' inverse, last first: built when asked (a refused group only). */
  reverts(): StoreOp[];
  /** Applies the change to the model (after it is stored and programmed, or optimistically inside a group). */
  commit(): void;
  /** Puts the model back as it was before commit(). */
  undo(): void;
  readonly empty: boolean;
}

/** The stored collections a transaction changes, each change kept once (Txn.finish). */
type ChangedCollection = "vnics" | "vaps" | "quarantine" | "timers" | "hvs" | "vns";
interface Change { c: ChangedCollection; k: string; before: unknown; after: unknown }

/**
 * Puts one record of the model to `value` (undefined: absent), keeping its
 * indexes: a VNIC's owners and counts (Model.index), a VAP's tag in its
 * port's allocator, a quarantine entry. The one place that knows how a
 * collection lives in the model; commit() and undo() both go through it.
 */
function setModel(m: Model, ch: Change, value: unknown): void {
  switch (ch.c) {
    case "vnics": {
      // the MAC/IP owners: commit() and undo() set them from the overlays
      const cur = m.vnics.get(ch.k);
      if (cur) m.index(cur, false, false);
      if (value) m.index(value as VnicRecord, true, false);
      return;
    }
    case "vaps": {
      const cur = m.vaps.get(ch.k);
      if (cur) m.alloc(cur.port).tags.delete(cur.tag);
      const v = value as { port: string; vn: number; tag: number } | undefined;
      if (v) {
        m.vaps.set(ch.k, v);
        m.alloc(v.port).tags.set(v.tag, v.vn);
      } else m.vaps.delete(ch.k);
      return;
    }
    case "quarantine": {
      const { port, tag } = (value ?? ch.before ?? ch.after) as QuarantineRecord;
      const q = value as QuarantineRecord | undefined;
      if (q) m.alloc(port).quarantine.set(tag, { vn: q.vn, until: q.until });
      else m.alloc(port).quarantine.delete(tag);
      return;
    }
    case "timers":
      value ? m.timers.set(ch.k, value as TimerRecord) : m.timers.delete(ch.k);
      return;
    case "hvs":
      value ? m.hvs.set(ch.k, value as HvRecord) : m.hvs.delete(ch.k);
      return;
    case "vns": // the IMA's VN cache (host/ima-client/cache.ts): in the catalog, set by setCatalog
      return;
  }
}

/** Puts one VN of the catalog to `v` (undefined: absent); an existing VN keeps its record and takes v's profile. */
function setCatalog(cat: VnCatalog, id: number, v: VnConfig | undefined): void {
  if (!v) cat.remove(id);
  else if (cat.get(id)) cat.setProfile(id, v.profile);
  else cat.add({ ...v });
}

const stateName = (r: VnicRecord | null | undefined) => (!r ? "Init" : r.state === "active" ? "Activated" : "Associated");

/** What an absent lazy map reads as (Txn: the maps most changes never touch are made on first write). */
const NONE: ReadonlyMap<unknown, unknown> = new Map();
const none = <K, V>() => NONE as unknown as ReadonlyMap<K, V>;

// Allocation per change matters (issue 15: a change per attach, ~20 KB of
// garbage each before): the maps an attach always uses are made with the
// Txn, the others (tag hints, tags allocated and freed, ranges, hv records,
// timers, VN changes) on first write, and read as empty until then.
export class Txn {
  readonly vnicChanges = new Map<string, VnicRecord | null>();
  private hvW: Map<string, HvRecord> | undefined;
  private timerW: Map<string, TimerRecord | null> | undefined;
  private macOv = new Map<string, string | null>();
  private ipOv = new Map<string, { vnic: string; mac: string } | null>();
  private countDelta = new Map<string, number>();
  private hvDelta = new Map<string, number>();
  private tagHintsW: Map<string, { tag: number; strict: boolean }> | undefined;
  private allocatedW: Map<string, number> | undefined;
  private freedW: Map<string, { tag: number; q?: QuarantineRecord }> | undefined;
  /** Made on the first event (emit): most changes send none. */
  get events(): readonly { hv: string; event: Event }[] { return this.eventsW ?? NO_EVENTS; }
  private eventsW: { hv: string; event: Event }[] | undefined;
  /** Made on the first line (pushTo): most changes log one or two. */
  get logs(): readonly string[] { return this.logsW ?? NO_LOGS; }
  private logsW: string[] | undefined;
  private finished = false;

  private hvVnDelta = new Map<string, number>();
  private rangeDeltaW: Map<string, number> | undefined;
  /** VNs of the catalog this change adds, changes (a profile) or removes; `cache`: kept in the store's IMA cache too. */
  private vnChangesW: Map<number, { after: VnConfig | undefined; cache: boolean }> | undefined;

  get hvChanges(): ReadonlyMap<string, HvRecord> { return this.hvW ?? none(); }
  get timerChanges(): ReadonlyMap<string, TimerRecord | null> { return this.timerW ?? none(); }
  private get tagHints(): ReadonlyMap<string, { tag: number; strict: boolean }> { return this.tagHintsW ?? none(); }
  private get allocated(): ReadonlyMap<string, number> { return this.allocatedW ?? none(); }
  private get freed(): ReadonlyMap<string, { tag: number; q?: QuarantineRecord }> { return this.freedW ?? none(); }
  private get rangeDelta(): ReadonlyMap<string, number> { return this.rangeDeltaW ?? none(); }
  private get vnChanges(): ReadonlyMap<number, { after: VnConfig | undefined; cache: boolean }> { return this.vnChangesW ?? none(); }

  constructor(readonly model: Model, readonly now: number, private quarantineMs: number, private guard?: TxnGuard,
    private readonly catalog?: VnCatalog) {}

  /**
   * A VN enters the catalog or changes its profile (`v`), or leaves it
   * (undefined), with this change: programmed (`vn` first, `vn.del` last),
   * stored in the IMA cache when `cache` (issue 4), and committed and undone
   * with the rest (issue 16 "one commit path").
   */
  setVn(id: number, v: VnConfig | undefined, cache = false): void {
    if (!this.catalog) throw new Error("this transaction has no catalog");
    const prev = this.vnChanges.get(id);
    (this.vnChangesW ??= new Map()).set(id, { after: v ? { ...v } : undefined, cache: cache || !!prev?.cache });
  }

  /** The post-state record (read-only view; copy before editing, see edit()). */
  peek(id: string): VnicRecord | undefined {
    if (this.vnicChanges.has(id)) return this.vnicChanges.get(id) ?? undefined;
    return this.model.vnics.get(id);
  }

  /** A private deep copy of the post-state record, to modify and put(). */
  edit(id: string): VnicRecord | undefined {
    const r = this.peek(id);
    return r ? copyVnic(r) : undefined;
  }

  macOwner(vn: number, mac: string): string | undefined {
    const k = macKey(vn, mac);
    return this.macOv.has(k) ? this.macOv.get(k) ?? undefined : this.model.macOwner.get(k);
  }

  ipOwner(vn: number, ip: string): { vnic: string; mac: string } | undefined {
    const k = ipKey(vn, ip);
    return this.ipOv.has(k) ? this.ipOv.get(k) ?? undefined : this.model.ipOwner.get(k);
  }

  /** IPs (and ranges) of VN `vn` that this transaction binds, with their owners. */
  *touchedIps(vn: number): Iterable<[string, { vnic: string; mac: string }]> {
    const pre = `${vn}|`;
    for (const [k, o] of this.ipOv) if (o && k.startsWith(pre)) yield [k.slice(pre.length), o];
  }

  /** VNICs of an End Device in the post-state. */
  vnicsOf(hv: string): string[] {
    const out = new Set(this.model.byHv.get(hv) ?? []);
    for (const [id, r] of this.vnicChanges) {
      if (r && r.hv === hv) out.add(id);
      else out.delete(id);
    }
    return [...out];
  }

  /** How many VNICs an End Device holds in the post-state. */
  countOf(hv: string): number {
    return (this.model.byHv.get(hv)?.size ?? 0) + (this.hvDelta.get(hv) ?? 0);
  }

  vapTag(port: string, vn: number): number | undefined {
    const k = vapKey(port, vn);
    if (this.freed.has(k)) return undefined;
    return this.allocated.get(k) ?? this.model.vaps.get(k)?.tag;
  }

  /** A requested tag: `strict` ones fail with tag-conflict, others (sync) are preferences. */
  hintTag(port: string, vn: number, tag: number, strict: boolean): void {
    (this.tagHintsW ??= new Map()).set(vapKey(port, vn), { tag, strict });
  }

  put(r: VnicRecord): void {
    this.replace(r.vnic, r);
  }

  del(id: string): void {
    if (this.peek(id)) this.replace(id, null);
  }

  private replace(id: string, next: VnicRecord | null): void {
    if (this.finished) throw new Error("transaction already finished");
    const prev = this.peek(id);
    if (prev) this.hvDelta.set(prev.hv, (this.hvDelta.get(prev.hv) ?? 0) - 1);
    if (next) this.hvDelta.set(next.hv, (this.hvDelta.get(next.hv) ?? 0) + 1);
    if (prev) this.shareDelta(prev, -1);
    if (next) this.shareDelta(next, 1);
    if (prev) {
      for (const b of prev.vns) {
        const vk = vapKey(prev.port, b.vn);
        this.countDelta.set(vk, (this.countDelta.get(vk) ?? 0) - 1);
        for (const a of b.addrs) {
          const mk = macKey(b.vn, a.mac);
          if (this.macOwner(b.vn, a.mac) === id) this.macOv.set(mk, null);
          for (const ip of a.ips) if (this.ipOwner(b.vn, ip)?.vnic === id) this.ipOv.set(ipKey(b.vn, ip), null);
        }
      }
    }
    if (next) {
      for (const b of next.vns) {
        const vk = vapKey(next.port, b.vn);
        this.countDelta.set(vk, (this.countDelta.get(vk) ?? 0) + 1);
        for (const a of b.addrs) {
          this.macOv.set(macKey(b.vn, a.mac), id);
          for (const ip of a.ips) this.ipOv.set(ipKey(b.vn, ip), { vnic: id, mac: a.mac });
        }
      }
    }
    this.vnicChanges.set(id, next);
  }

  /** A record's weight in the {hv}'s shares (checkShares): its VNs and its ranges, `d` = +1 or -1. */
  private shareDelta(rec: VnicRecord, d: number): void {
    for (const b of rec.vns) {
      const hk = `${rec.hv}|${b.vn}`;
      this.hvVnDelta.set(hk, (this.hvVnDelta.get(hk) ?? 0) + d);
      let n = 0;
      for (const a of b.addrs) n += countRanges(a.ips);
      if (n) (this.rangeDeltaW ??= new Map()).set(rec.hv, (this.rangeDelta.get(rec.hv) ?? 0) + d * n);
    }
  }

  setTimer(kind: TimerRecord["kind"], subject: string, due: number): void {
    (this.timerW ??= new Map()).set(keys.timer(kind, subject), { kind, subject, due });
  }

  clearTimer(kind: TimerRecord["kind"], subject: string): void {
    const k = keys.timer(kind, subject);
    if (this.timerChanges.get(k) || this.model.timers.has(k)) (this.timerW ??= new Map()).set(k, null);
  }

  putHv(h: HvRecord): void {
    (this.hvW ??= new Map()).set(h.hv, h);
  }

  emit(hv: string, event: Event): void {
    this.eventsW = pushTo(this.eventsW, { hv, event });
  }

  log(line: string): void {
    this.logsW = pushTo(this.logsW, line);
  }

  /**
   * Per-{hv} shares of what the End Devices share (PROTOCOL.md §2 Authority,
   * INTERFACES.md `limits`): ranges per {hv} and the NVE's prefix table, and the
   * VNs (so tags) an {hv} uses on a port it shares with others. Only growth is
   * refused (limit-exceeded), so a change that shrinks always passes.
   */
  private checkShares(g: TxnGuard): void {
    const m = this.model;
    let sum = 0;
    for (const [hv, d] of this.rangeDelta) {
      sum += d;
      if (d <= 0 || isConfigHv(hv)) continue;
      const post = (m.hvRanges.get(hv) ?? 0) + d;
      if (post > g.maxPrefixesPerHv)
        throw new ProtocolError("limit-exceeded", `${hv} would hold ${post} ranges (limit maxPrefixesPerHv ${g.maxPrefixesPerHv})`, "addrs");
    }
    if (sum > 0 && m.rangeTotal + sum > g.prefixCapacity)
      throw new ProtocolError("limit-exceeded", `the NVE's prefix table holds at most ${g.prefixCapacity} ranges`, "addrs");
    // VNs entered (+1) or left (-1) per {hv}: one {hv} (a request's own) in
    // a pair of scalars, a Map only once a second one appears (a sync, a purge)
    let oneHv: string | undefined, oneN = 0;
    let grown: Map<string, number> | undefined;
    for (const [k, d] of this.hvVnDelta) {
      if (d === 0) continue;
      const pre = m.hvVn.get(k) ?? 0;
      const into = pre === 0 && pre + d > 0, out = pre > 0 && pre + d === 0;
      if (!into && !out) continue;
      const hv = k.slice(0, k.lastIndexOf("|"));
      const n = into ? 1 : -1;
      if (grown) grown.set(hv, (grown.get(hv) ?? 0) + n);
      else if (oneHv === undefined || oneHv === hv) { oneHv = hv; oneN += n; }
      else grown = new Map([[oneHv, oneN], [hv, n]]);
    }
    if (grown) for (const [hv, n] of grown) checkTagShare(g, m, hv, n);
    else if (oneHv !== undefined) checkTagShare(g, m, oneHv, oneN);
  }

  /** Derives tags, DpOps and store writes. Throws ProtocolError (tag-conflict, tag-exhausted), changing nothing. */
  // The Txn is its own Finished (commit, undo, reverts are its methods, the
  // changes its fields): no closures, no context object, no op list that
  // stays empty, per change (issue 15: the garbage of an attach).
  finish(): Finished {
    this.finished = true;
    const m = this.model;
    const now = this.now;
    if (this.guard) this.checkShares(this.guard);
    // VAPs: Disconnected ⇄ Connected (RFC 8394 §3) when the VNIC count crosses zero.
    let tagDel: DpOp[] | undefined;
    let tagAdd: DpOp[] | undefined;
    let toAllocate: string[] | undefined;
    for (const [k, d] of this.countDelta) {
      if (d === 0) continue;
      const pre = m.vapCount.get(k) ?? 0;
      const post = pre + d;
      if (pre > 0 && post === 0) {
        const vap = m.vaps.get(k)!;
        const q = this.quarantineMs > 0 ? { port: vap.port, tag: vap.tag, vn: vap.vn, until: now + this.quarantineMs } : undefined;
        (this.freedW ??= new Map()).set(k, { tag: vap.tag, q });
        tagDel = pushTo(tagDel, { op: "tag.del", port: vap.port, tag: vap.tag });
        this.log(`VAP ${vap.port}/VN ${vap.vn}: Connected → Disconnected, tag ${vap.tag} freed${q ? `, quarantined until ${new Date(q.until).toISOString()}` : ""}`);
      } else if (pre === 0 && post > 0) toAllocate = pushTo(toAllocate, k);
    }
    const takenByPort = toAllocate ? new Map<string, Set<number>>() : undefined;
    if (takenByPort) for (const k of toAllocate!) {
      const [port, vn] = splitVapKey(k);
      const alloc = m.alloc(port);
      let taken = takenByPort.get(port);
      if (!taken) takenByPort.set(port, (taken = new Set()));
      const hint = this.tagHints.get(k);
      let tag: number | undefined;
      if (hint && !taken.has(hint.tag) && alloc.available(hint.tag, vn, now)) tag = hint.tag;
      else if (hint?.strict) {
        const owner = alloc.tags.get(hint.tag);
        throw new ProtocolError("tag-conflict", owner !== undefined
          ? `tag ${hint.tag} on port ${port} is VN ${owner}'s`
          : `tag ${hint.tag} on port ${port} is taken or in quarantine`, "tag");
      } else tag = alloc.lowest(vn, now, taken);
      if (tag === undefined) throw new ProtocolError("tag-exhausted", `no free tag left on port ${port}`, "vn");
      taken.add(tag);
      (this.allocatedW ??= new Map()).set(k, tag);
      tagAdd = pushTo(tagAdd, { op: "tag", port, tag, vn });
      this.log(`VAP ${port}/VN ${vn}: Disconnected → Connected, tag ${tag}`);
    }
    // Bindings: compare pre and post per (VN, MAC) and (VN, IP): unchanged → no op.
    let macDel: DpOp[] | undefined;
    let macSet: DpOp[] | undefined;
    for (const [k, postOwner] of this.macOv) {
      const preOwner = m.macOwner.get(k);
      const pre = preOwner !== undefined ? m.vnics.get(preOwner) : undefined;
      const post = postOwner ? this.peek(postOwner) : undefined;
      if (!post) {
        if (pre) macDel = pushTo(macDel, { op: "mac.del", vn: keyVn(k), mac: keyRest(k) });
      } else if (!pre || pre.port !== post.port || pre.state !== post.state || preOwner !== postOwner) {
        // the VNIC too: its MACs share its policer (pipeline/qos.ts)
        macSet = pushTo(macSet, { op: "mac.local", vn: keyVn(k), mac: keyRest(k), port: post.port, active: post.state === "active", vnic: postOwner ?? undefined });
      }
    }
    let ipDel: DpOp[] | undefined;
    let ipSet: DpOp[] | undefined;
    for (const [k, post] of this.ipOv) {
      const pre = m.ipOwner.get(k);
      if (!post) {
        if (pre) ipDel = pushTo(ipDel, { op: "ip.del", vn: keyVn(k), ip: keyRest(k) });
      } else if (!pre || pre.mac !== post.mac) ipSet = pushTo(ipSet, { op: "ip", vn: keyVn(k), ip: keyRest(k), mac: post.mac });
    }
    for (const [id, r] of this.vnicChanges) {
      const prev = m.vnics.get(id);
      const a = stateName(prev), b = stateName(r);
      if (a !== b || (prev && r && (prev.port !== r.port || prev.hv !== r.hv)))
        this.log(`VNIC ${id}: ${a}${prev ? ` (${prev.hv}@${prev.port})` : ""} → ${b}${r ? ` (${r.hv}@${r.port})` : ""}${r?.hold ? " held for migration" : ""}`);
    }
    let vnAdd: DpOp[] | undefined;
    let vnDel: DpOp[] | undefined;
    for (const [vn, c] of this.vnChanges) if (c.after) vnAdd = pushTo(vnAdd, { op: "vn", vn, vni: c.after.vni, profile: c.after.profile }); else vnDel = pushTo(vnDel, { op: "vn.del", vn });
    // in this order; most changes fill one or two of these lists
    let ops = NO_OPS;
    const add = (l: DpOp[] | undefined) => { if (l && l.length) ops = ops.length ? ops.concat(l) : l; };
    add(vnAdd); add(ipDel); add(macDel); add(tagAdd); add(macSet); add(ipSet); add(tagDel); add(vnDel);
    this.ops = ops;
    this.empty = this.vnicChanges.size === 0 && this.hvChanges.size === 0 && this.timerChanges.size === 0 && this.vnChanges.size === 0;

    // Every change of a stored collection, once, as (collection, key, before,
    // after) from the pre-state (issue 16 "one commit path"): the store writes,
    // their inverse, the model's commit and its undo are all derived from this
    // list, so a new collection is one more record() and one case in setModel().
    for (const [id, r] of this.vnicChanges) this.record("vnics", id, m.vnics.get(id), r ?? undefined);
    for (const [k, f] of this.freed) {
      this.record("vaps", k, m.vaps.get(k), undefined);
      if (f.q) this.record("quarantine", keys.quarantine(f.q.port, f.q.tag), this.quarantined(f.q.port, f.q.tag), f.q);
    }
    for (const [k, tag] of this.allocated) {
      const [port, vn] = splitVapKey(k);
      this.record("vaps", k, m.vaps.get(k), { port, vn, tag });
      const q = this.quarantined(port, tag);
      if (q) this.record("quarantine", keys.quarantine(port, tag), q, undefined); // taking a tag ends its quarantine
    }
    for (const [k, t] of this.timerChanges) this.record("timers", k, m.timers.get(k), t ?? undefined);
    for (const [k, h] of this.hvChanges) this.record("hvs", k, m.hvs.get(k), h);
    // The catalog's before, copied: setProfile replaces a VN's profile in place.
    if (this.vnChanges.size) {
      const cat = this.catalog;
      this.vnBefore = new Map([...this.vnChanges.keys()].map((id) => {
        const v = cat?.get(id);
        return [id, v ? { ...v } : undefined] as const;
      }));
      for (const [id, c] of this.vnChanges) if (c.cache) this.record("vns", String(id), cacheRec(this.vnBefore.get(id)), cacheRec(c.after));
    }
    const changes = this.changes;
    const writes: StoreOp[] = new Array(changes.length);
    for (let i = 0; i < changes.length; i++) {
      const ch = changes[i];
      writes[i] = ch.after !== undefined ? ["put", ch.c, ch.k, ch.after] : ["del", ch.c, ch.k];
    }
    this.writes = writes;
    return this;
  }

  // What finish() derives (Finished).
  ops: DpOp[] = NO_OPS;
  writes: StoreOp[] = NO_WRITES;
  empty = true;
  /** Made on the first record(), as a literal of one (an empty array's first push gives it 17 slots). */
  private get changes(): readonly Change[] { return this.changesW ?? NO_CHANGES; }
  private changesW: Change[] | undefined;
  /** changes by `${collection}\0${key}`, made once a change holds many (a sync, a purge) */
  private changeAt: Map<string, Change> | undefined;
  private vnBefore: Map<number, VnConfig | undefined> | undefined;
  /** The MAC/IP owners before commit, in the overlays' order (for undo); undefined = not committed. */
  private preMac: (string | undefined)[] | undefined;
  private preIp: ({ vnic: string; mac: string } | undefined)[] | undefined;

  /** One key changed twice: first before, last after. Most changes hold a few records: a scan; a map of them once there are more. */
  private record(c: ChangedCollection, k: string, before: unknown, after: unknown): void {
    const changes = this.changes;
    let at = this.changeAt;
    if (!at && changes.length >= 16) {
      at = this.changeAt = new Map();
      for (const ch of changes) at.set(`${ch.c}\u0000${ch.k}`, ch);
    }
    let prev: Change | undefined;
    if (at) prev = at.get(`${c}\u0000${k}`);
    else for (const x of changes) if (x.c === c && x.k === k) { prev = x; break; }
    if (prev) { prev.after = after; return; }
    const ch: Change = { c, k, before, after };
    at?.set(`${c}\u0000${k}`, ch);
    this.changesW = pushTo(this.changesW, ch);
  }

  private quarantined(port: string, tag: number): QuarantineRecord | undefined {
    const q = this.model.alloc(port).quarantine.get(tag);
    return q ? { port, tag, ...q } : undefined;
  }

  /** The writes' inverse, last first (a refused group only). */
  reverts(): StoreOp[] {
    return [...this.changes].reverse().map((ch): StoreOp => (ch.before !== undefined ? ["put", ch.c, ch.k, ch.before] : ["del", ch.c, ch.k]));
  }

  /** Applies the change to the model (Finished.commit). */
  commit(): void {
    const m = this.model;
    // The MAC/IP owner indexes are derived from the VNIC records; the overlay
    // entries settle any ordering between records, and undo() restores them.
    const preMac = new Array<string | undefined>(this.macOv.size);
    let i = 0;
    for (const k of this.macOv.keys()) preMac[i++] = m.macOwner.get(k);
    const preIp = new Array<{ vnic: string; mac: string } | undefined>(this.ipOv.size);
    const ipIdx = m.ipOwner;
    i = 0;
    for (const k of this.ipOv.keys()) preIp[i++] = ipIdx.get(k);
    this.preMac = preMac;
    this.preIp = preIp;
    for (const ch of this.changes) setModel(m, ch, ch.after);
    const cat = this.catalog;
    if (cat && this.vnChangesW) for (const [id, c] of this.vnChangesW) setCatalog(cat, id, c.after);
    for (const [k, o] of this.macOv) o ? m.macOwner.set(k, o) : m.macOwner.delete(k);
    for (const [k, o] of this.ipOv) o ? ipIdx.set(k, o) : ipIdx.delete(k);
  }

  /** Puts the model back as it was before commit() (Finished.undo). */
  undo(): void {
    const { preMac, preIp } = this;
    if (!preMac || !preIp) return; // not committed
    const m = this.model, changes = this.changes;
    for (let i = changes.length - 1; i >= 0; i--) setModel(m, changes[i], changes[i].before);
    const cat = this.catalog;
    if (cat && this.vnBefore) for (const [id, v] of this.vnBefore) setCatalog(cat, id, v);
    let i = 0;
    for (const k of this.macOv.keys()) { const o = preMac[i++]; o !== undefined ? m.macOwner.set(k, o) : m.macOwner.delete(k); }
    i = 0;
    const ipIdx = m.ipOwner;
    for (const k of this.ipOv.keys()) { const o = preIp[i++]; o !== undefined ? ipIdx.set(k, o) : ipIdx.delete(k); }
    this.preMac = this.preIp = undefined;
  }
}

/** An {hv} that enters `n` more VNs (net) must stay within its share of its port's tags (Txn.checkShares). */
function checkTagShare(g: TxnGuard, m: Model, hv: string, n: number): void {
  if (n <= 0 || isConfigHv(hv)) return;
  const share = g.tagShare(hv);
  const post = (m.hvVnCount.get(hv) ?? 0) + n;
  if (share !== undefined && post > share)
    throw new ProtocolError("limit-exceeded", `${hv} would use ${post} VNs on its port, more than its share of the port's tags (${share})`, "vn");
}

/** Appends to a list made on first use, as a literal of one: its exact size, not the 17 slots a first push() gives an empty array. */
function pushTo<T>(l: T[] | undefined, x: T): T[] {
  if (!l) return [x];
  l.push(x);
  return l;
}

/** The ops of a change that programs nothing: shared, so frozen (nothing appends to a finished change's ops). */
const NO_OPS = Object.freeze([]) as unknown as DpOp[];
const NO_LOGS: readonly string[] = Object.freeze([]);
const NO_EVENTS: readonly { hv: string; event: Event }[] = Object.freeze([]);
const NO_CHANGES: readonly Change[] = Object.freeze([]);
const NO_WRITES = Object.freeze([]) as unknown as StoreOp[];
const cacheRec = (v: VnConfig | undefined) =>
  v && { id: v.id, vni: v.vni, profile: v.profile, ...(v.name ? { name: v.name } : {}), ...(v.alias ? { alias: v.alias } : {}) };
/** The VN and the rest of a `${vn}|${x}` key (macKey, ipKey), without splitKey's pair. */
const keyVn = (k: string) => Number(k.slice(0, k.indexOf("|")));
const keyRest = (k: string) => k.slice(k.indexOf("|") + 1);
