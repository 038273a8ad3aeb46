// VNIC-level helpers shared by the handlers: ownership and migration arrival,
// address claims with conflict/move rules, containment (seed §3.1).
import { ProtocolError } from "../protocol/errors.js";
import { normIp, normMac } from "../domain/addr-text.js";
import type { Addr, VnFull } from "../protocol/types.js";
import { MEMBERS_TEXT } from "../protocol/codec.js";
import type { VnConfig } from "../config/types.js";
import type { VnProfile } from "../domain/profile.js";
import { copyVnic, type VnicRecord } from "../store/store.js";
import type { HandlerCtx } from "./context.js";
import { isConfigHv } from "./model.js";
import { parseIp, type Ip } from "../domain/addr.js";
import { overlaps } from "./ranges.js";

export type AddrSet = { mac: string; ips: string[] }[];

/** Canonical, merged addresses (one entry per MAC, IPs deduplicated). */
export function normAddrs(addrs: Addr[]): AddrSet {
  // One MAC with a few IPs (an attach's usual request): the same result
  // without a Map and a Set per request (issue 15: garbage per attach).
  if (addrs.length === 1 && (addrs[0].ips?.length ?? 0) <= 16) {
    const ips: string[] = [];
    for (const ip of addrs[0].ips ?? []) {
      const n = normIp(ip);
      if (!ips.includes(n)) ips.push(n);
    }
    return [{ mac: normMac(addrs[0].mac), ips }];
  }
  const byMac = new Map<string, Set<string>>();
  for (const a of addrs) {
    const mac = normMac(a.mac);
    if (!byMac.has(mac)) byMac.set(mac, new Set());
    for (const ip of a.ips ?? []) byMac.get(mac)!.add(normIp(ip));
  }
  return [...byMac].map(([mac, ips]) => ({ mac, ips: [...ips] }));
}

/**
 * The requester's post-state copy of a VNIC, or undefined (Init). A {hv} sees
 * only its own VNICs (PROTOCOL.md §2 Authority): another End Device's VNIC is
 * undefined here, exactly as an unknown one, unless the request claims it
 * (`claim`: it would create or activate the VNIC). The one claim allowed is an
 * arrival (RFC 8394 Req-13): an activation with `migration: true` of a VNIC in
 * its migration hold on this NVE, which then moves to the requester's port
 * (seed §4.3: "associate the addresses with a different port/tag pair", no
 * withdraw). Any other claim is not-authorized and changes nothing.
 */
export function acquire(ctx: HandlerCtx, id: string,
  o: { activating: boolean; migration?: boolean; claim?: boolean; field?: string }): VnicRecord | undefined {
  const field = o.field ?? "vnic";
  const cur = ctx.tx.peek(id);
  if (!cur) return undefined;
  if (isConfigHv(cur.hv) && !isConfigHv(ctx.hv)) throw new ProtocolError("not-authorized", `VNIC ${id} is static configuration of this NVE`, field);
  if (cur.hv !== ctx.hv) {
    if (!(o.activating && o.migration && cur.hold)) {
      if (o.claim) throw new ProtocolError("not-authorized", `VNIC ${id} cannot be claimed by ${ctx.hv}: only a VNIC in its migration hold may arrive (migration: true)`, field);
      return undefined;
    }
  }
  const r = copyVnic(cur);
  if (r.hv !== ctx.hv) {
    ctx.tx.log(`VNIC ${id}: migration from ${r.hv}@${r.port} to ${ctx.hv}@${ctx.port}`);
    r.hv = ctx.hv;
  }
  if (o.activating) {
    if (r.hold) {
      delete r.hold;
      ctx.tx.clearTimer("migration-hold", id);
    }
    if (o.migration) ctx.tx.log(`VNIC ${id}: activation flagged as hot migration (Req-13)`);
    r.port = ctx.port;
  }
  return r;
}

/** The requester's own VNIC, which must exist (unknown-vnic, also for another End Device's). */
export function owned(ctx: HandlerCtx, id: string): VnicRecord {
  const r = acquire(ctx, id, { activating: false });
  if (!r) throw new ProtocolError("unknown-vnic", `no VNIC ${id} on this NVE`, "vnic");
  return r;
}

/** A VN reference of a request → the VN, which the requester must be allowed to use (unknown-vn, not-authorized). */
export function resolveVn(ctx: HandlerCtx, ref: Parameters<HandlerCtx["catalog"]["resolve"]>[0], field = "vn"): number {
  const v = ctx.catalog.resolve(ref, field);
  ctx.authorize(v, field);
  return v.id;
}

export function newVnic(ctx: HandlerCtx, id: string, state: VnicRecord["state"]): VnicRecord {
  if (ctx.tx.countOf(ctx.hv) >= ctx.settings.limits.maxVnicsPerHv)
    throw new ProtocolError("limit-exceeded", `${ctx.hv} already has ${ctx.settings.limits.maxVnicsPerHv} VNICs`, "vnic");
  return { vnic: id, hv: ctx.hv, port: ctx.port, state, vns: [] };
}

/**
 * `list` with `x` at its end, for the lists a VNIC's record keeps (its VNs,
 * a VN's MACs, a MAC's IPs): an empty list becomes a literal of one instead
 * of taking a push, whose first growth gives the array 17 slots (~130 B of
 * slack each). A record lives as long as its binding, so every scavenge
 * until its promotion copied that slack three times per attach (issue 15:
 * the young generation's pauses are the survivors' copies). `list` is the
 * request's private copy (Txn.edit / newVnic), so replacing it is safe.
 */
function appended<T>(list: T[], x: T): T[] {
  if (list.length === 0) return [x];
  list.push(x);
  return list;
}

/** Connects the VNIC to the VN (creating the VNIC↔VN entry); applies a requested tag. */
export function connect(ctx: HandlerCtx, r: VnicRecord, vn: number, tag: number | undefined, strict: boolean): void {
  if (!r.vns.some((b) => b.vn === vn)) {
    if (r.vns.length >= 64) throw new ProtocolError("limit-exceeded", `VNIC ${r.vnic} is already connected to 64 VNs`, "vn");
    r.vns = appended(r.vns, { vn, addrs: [] });
  }
  if (tag !== undefined) {
    const have = ctx.tx.vapTag(r.port, vn);
    if (have !== undefined && have !== tag) {
      if (strict) throw new ProtocolError("tag-conflict", `VN ${vn} already uses tag ${have} on port ${r.port} (one tag per port and VN, Req-2)`, "tag");
    } else if (have === undefined) ctx.tx.hintTag(r.port, vn, tag, strict);
  }
}

/** Removes a MAC (and its IPs) or some IPs from a departing VNIC that loses them to another one (a move). */
function takeFrom(ctx: HandlerCtx, ownerId: string, vn: number, mac: string, ip?: string): void {
  const owner = ctx.tx.edit(ownerId)!;
  const b = owner.vns.find((x) => x.vn === vn)!;
  const a = b.addrs.find((x) => x.mac === mac)!;
  let moved: { mac: string; ips: string[] };
  if (ip === undefined) {
    b.addrs = b.addrs.filter((x) => x.mac !== mac);
    moved = { mac, ips: a.ips };
  } else {
    a.ips = a.ips.filter((x) => x !== ip);
    moved = { mac, ips: [ip] };
  }
  ctx.tx.put(owner);
  ctx.tx.emit(owner.hv, { event: "addr.disassociated", vnic: ownerId, vn: ctx.catalog.full(vn), addrs: [moved], reason: "moved" });
  ctx.tx.log(`VNIC ${ownerId}: ${ip ?? mac} in VN ${vn} moved to a new owner while departing by migration`);
}

const departing = (ctx: HandlerCtx, id: string) => !!ctx.tx.peek(id)?.hold;

/**
 * Union of `addrs` into the VNIC's VN entry (PROTOCOL.md §2 addr.associate,
 * Req-8, Req-10). A MAC or IP of another VNIC of the VN: address-conflict,
 * unless that VNIC is departing by migration (then it moves). A range may not
 * overlap another VNIC's range or address in the VN, nor be shorter than
 * limits.minPrefixLen (PROTOCOL.md §2 Authority).
 */
export function associate(ctx: HandlerCtx, r: VnicRecord, vn: number, addrs: AddrSet, field = "addrs"): void {
  const b = r.vns.find((x) => x.vn === vn);
  if (!b) throw new ProtocolError("not-connected", `VNIC ${r.vnic} is not connected to VN ${vn}`, "vn");
  const had = ctx.tx.peek(r.vnic)?.vns.find((x) => x.vn === vn);
  addrs.forEach((a, i) => {
    const owner = ctx.tx.macOwner(vn, a.mac);
    if (owner !== undefined && owner !== r.vnic) {
      if (!departing(ctx, owner)) throw new ProtocolError("address-conflict", `MAC ${a.mac} is bound to another VNIC in VN ${vn}`, `${field}[${i}].mac`);
      takeFrom(ctx, owner, vn, a.mac);
    }
    let entry = b.addrs.find((x) => x.mac === a.mac);
    if (!entry) b.addrs = appended(b.addrs, (entry = { mac: a.mac, ips: [] }));
    a.ips.forEach((ip, j) => {
      const o = ctx.tx.ipOwner(vn, ip);
      if (o && o.vnic !== r.vnic) {
        if (!departing(ctx, o.vnic)) throw new ProtocolError("address-conflict", `IP ${ip} is bound to another VNIC in VN ${vn}`, `${field}[${i}].ips[${j}]`);
        takeFrom(ctx, o.vnic, vn, o.mac, ip);
      }
      checkRange(ctx, r.vnic, vn, ip, !!had?.addrs.some((x) => x.ips.includes(ip)), field, i, j);
      // An IP is bound to one MAC (Req-10 "IP-MAC pair" update): drop it from this VNIC's other MACs.
      for (const other of b.addrs) if (other !== entry && other.ips.includes(ip)) other.ips = other.ips.filter((x) => x !== ip);
      if (!entry!.ips.includes(ip)) entry!.ips = appended(entry!.ips, ip);
    });
  });
  let n = 0;
  for (const x of r.vns) for (const a of x.addrs) n += 1 + a.ips.length;
  if (n > ctx.settings.limits.maxAddrsPerVnic)
    throw new ProtocolError("limit-exceeded", `VNIC ${r.vnic} would hold ${n} addresses (limit maxAddrsPerVnic ${ctx.settings.limits.maxAddrsPerVnic})`, field);
}

/**
 * A range's length (bad-request below limits.minPrefixLen, /0 always) and its
 * overlaps with other VNICs of the VN (address-conflict); an address inside
 * another VNIC's range conflicts too. `kept`: the VNIC already held `ip` in the
 * VN (checked when it came; a sync re-states it), which skips the scan of the
 * VN's addresses.
 */
/** The field path of addrs[i].ips[j], built only for a refusal (issue 15: a string per IP of every attach before). */
const ipField = (addrs: string, i: number, j: number) => `${addrs}[${i}].ips[${j}]`;

function checkRange(ctx: HandlerCtx, vnic: string, vn: number, ip: string, kept: boolean, addrsField: string, i: number, j: number): void {
  const model = ctx.tx.model;
  const p = ip.includes("/") ? parseIp(ip) : null;
  const vnRanges = model.ranges.get(vn);
  if (!p || p.prefix === null || p.prefix === (p.is6 ? 128 : 32)) {
    if (!vnRanges || kept) return; // a host address: only another VNIC's range can hold it
    const h = parseIp(ip.includes("/") ? ip.slice(0, ip.indexOf("/")) : ip)!;
    for (const [rip, x] of vnRanges) {
      if (x.vnic === vnic || !overlaps(h, x.p)) continue;
      const o = ctx.tx.ipOwner(vn, rip);
      if (o && o.vnic !== vnic)
        throw new ProtocolError("address-conflict", `IP ${ip} lies in range ${rip} of another VNIC in VN ${vn}`, ipField(addrsField, i, j));
    }
    return;
  }
  const min = p.is6 ? ctx.settings.limits.minPrefixLen.ipv6 : ctx.settings.limits.minPrefixLen.ipv4;
  if (p.prefix === 0 || p.prefix < min)
    throw new ProtocolError("bad-request", `range ${ip} is shorter than /${Math.max(min, 1)} (limits.minPrefixLen)`, ipField(addrsField, i, j));
  if (kept) return;
  // Ranges of the VN (in the model, and those this transaction adds), then every address of the VN.
  const check = (other: string, q: Ip | null) => {
    if (other === ip || !q || !overlaps(p, q)) return;
    const o = ctx.tx.ipOwner(vn, other);
    if (o && o.vnic !== vnic) throw new ProtocolError("address-conflict", `range ${ip} overlaps ${other} of another VNIC in VN ${vn}`, ipField(addrsField, i, j));
  };
  for (const [rip, x] of vnRanges ?? []) if (x.vnic !== vnic) check(rip, x.p);
  for (const [k, o] of ctx.tx.touchedIps(vn)) if (o.vnic !== vnic) check(k, parseIp(k));
  // Every address of the VN (a new range is rare: a load balancer's VIPs): the (VN, IP) keys, first byte compared cheaply.
  const pre = `${vn}|`;
  for (const [k, o] of model.ipOwner) if (o.vnic !== vnic && k.startsWith(pre)) check(k.slice(pre.length), parseIp(k.slice(pre.length)));
}

/** The vn.connect / vnic.attach result (PROTOCOL.md §2). */
export function connectResult(ctx: HandlerCtx, port: string, vn: number): () => Record<string, unknown> {
  return () => {
    const v = ctx.catalog.get(vn)!;
    const tag = ctx.tx.vapTag(port, vn), full = ctx.catalog.full(vn);
    const out: Record<string, unknown> & { [MEMBERS_TEXT]?: string } = { tag, vn: full, vni: v.vni, mtu: v.profile.mtu, profile: v.profile };
    // its JSON text as JSON.stringify would write it, the VN's part made once
    // per VN (issue 15: these nested objects were the answer's cost)
    if (typeof tag === "number" && Number.isInteger(tag)) out[MEMBERS_TEXT] = `"tag":${tag},${vnTail(v, full)}`;
    return out;
  };
}

/**
 * `"vn":…,"vni":…,"mtu":…,"profile":…` of a VN, as JSON.stringify writes
 * them (a key whose value is undefined left out), kept per catalog entry
 * while its references, VNI and profile object stay the same (the catalog
 * replaces a profile, never edits it: VnCatalog.setProfile).
 */
const tails = new WeakMap<VnConfig, { profile: VnProfile; vni: number; name?: string; alias?: string; text: string }>();
function vnTail(v: VnConfig, full: VnFull): string {
  const t = tails.get(v);
  if (t && t.profile === v.profile && t.vni === v.vni && t.name === full.name && t.alias === full.alias) return t.text;
  const text = JSON.stringify({ vn: full, vni: v.vni, mtu: v.profile.mtu, profile: v.profile }).slice(1, -1);
  tails.set(v, { profile: v.profile, vni: v.vni, name: full.name, alias: full.alias, text });
  return text;
}

/** The NVE's view of one VNIC in the shape of a sync entry (PROTOCOL.md §2 show). */
export function viewVnic(ctx: { catalog: { full(id: number): unknown }; tagOf(port: string, vn: number): number | undefined }, r: VnicRecord) {
  const out: Record<string, unknown> = {
    vnic: r.vnic, state: r.state,
    vns: r.vns.map((b) => ({ vn: ctx.catalog.full(b.vn), tag: ctx.tagOf(r.port, b.vn), addrs: b.addrs.map((a) => ({ mac: a.mac, ips: a.ips })) })),
  };
  if (r.hold) out.holdUntil = r.hold.until;
  return out;
}
