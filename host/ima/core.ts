// The mapping authority's state machine (PROTOCOL.md §6, issue 6), transport
// free: a batch of requests in, the responses, the store writes and the
// retained publishes out. The MQTT side (service.ts) runs one batch at a time:
// run() → store (durable) → publish (acknowledged) → answer, so nothing is
// answered before it is stored and visible (§2), and a batch amortises the
// LMDB commit over many requests.
//
// Rules, each enforced below with its source:
// - the catalog: id, name and alias and VNI are unique; vn.create fills what is
//   missing; operator ops only for the configured operators (§6);
// - only the NVEs of the configuration's `nves` list are served, each with the
//   one underlay IP listed for it; any other requester, or another IP, is
//   `not-authorized` (§6), so no NVE can join a flood list, announce or
//   withdraw in another's name or with 0.0.0.0;
// - an NVE announces only in VNs it joined (vtep.join) (§6);
// - MAC mobility (RFC 7432 §15): the IMA assigns the sequence numbers itself.
//   A MAC announced by an NVE other than its holder is a move and gets the
//   holder's seq + 1; a `seq` sent by an NVE is ignored, so no NVE can pin a
//   MAC with a high number. A MAC that moves more than `dupMoves` times within
//   `dupWindowMs` is flagged duplicate and frozen where it is, until an
//   operator's `mac.unfreeze` (or its holder's withdraw).
import { randomUUID } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import { Ajv, type ValidateFunction } from "ajv";
import { profileSchema } from "../config/schema.js";
import { profileProblems } from "../dataplane/acl.js";
import type { VnProfile } from "../domain/profile.js";
import { isUnicastIp, normIp, normMac } from "../domain/addr-text.js";
import { rateLimitedLog } from "../protocol/rate-log.js";
import { errorResponse } from "../protocol/codec.js";
import { ProtocolError } from "../protocol/errors.js";
import { decodeImaRequest, imaTopics, IMA_OPERATOR_OPS, type BindRecord, type VnRecord, type VtepRecord, type L3DomainRecord } from "../protocol/ima.js";
import type { VnRef } from "../protocol/types.js";
import type { ImaCollection, ImaDb, StoredBind, StoredVn, StoredVtep, StoredL3Domain } from "./db.js";
import { l3OfProfile } from "../dataplane/l3.js";

export interface ImaSettings {
  /** the IMA's identity */
  ima: string;
  /** identities allowed to change the catalog (§6) */
  operators: string[];
  /** the NVEs served, each with the only underlay IP it may use (§6); IPs in normIp form */
  nves: { id: string; ip: string }[];
  /** RFC 7432 §15 duplicate detection: more than `dupMoves` moves within `dupWindowMs` freezes the MAC */
  dupMoves: number;
  dupWindowMs: number;
  maxPayload: number;
  /** first VNI handed out by vn.create (4096: valid for VXLAN, Geneve and NVGRE, RFC 7637 §3.2) */
  vniBase: number;
}

export const DEFAULT_IMA_SETTINGS: ImaSettings = {
  ima: "ima", operators: [], nves: [], dupMoves: 5, dupWindowMs: 180_000, maxPayload: 256 * 1024, vniBase: 4096,
};

/** A VN as seeded from the IMA's configuration file (`vns`): like vn.create's fields. */
export interface VnSeed { id?: number; name?: string; alias?: string; vni?: number; profile?: Partial<VnProfile> }

export interface Publish { topic: string; payload: string }
export interface BatchResult {
  responses: { who: string; rsp: Record<string, unknown> }[];
  writes: { c: ImaCollection; key: string; value: unknown }[];
  publishes: Publish[];
  /** MAC moves (RFC 7432 §15) the batch made: counted by the caller once the store took the batch (nvedge_ima_moves_total) */
  moves: number;
  /** puts memory back as it was before the batch (the store refused it) */
  undo(): void;
}

// compiled on first use, not at import (a process start pays for each compile)
let profileCompiled: ValidateFunction | undefined;
const MAX_VN = 16777215;
const MAX_SEQ = 4294967295;

/** A profile with defaults filled and keys in one order, so equal profiles are equal strings. */
export function canonProfile(p: unknown, field = "profile"): VnProfile {
  const c = structuredClone(p ?? { encap: "vxlan" }) as Record<string, unknown>;
  const validateProfile = (profileCompiled ??= new Ajv({ strict: false, useDefaults: true }).compile(profileSchema));
  if (!validateProfile(c)) {
    const e = validateProfile.errors![0];
    throw new ProtocolError("bad-request", `${field}${e.instancePath.replace(/\//g, ".")}: ${e.message}`, field);
  }
  // ACL rules, QoS, learning limits (PROTOCOL.md §5): the data plane's own checks, naming the key
  const pr = profileProblems(c as unknown as VnProfile)[0];
  if (pr) throw new ProtocolError("bad-request", `${field}.${pr.path}: ${pr.message}`, `${field}.${pr.path}`);
  const out: Record<string, unknown> = {};
  for (const k of ["encap", "service", "mtu", "portSecurity", "arpSuppress", "learn", "learnAgeMs", "maxLearnedPerPort"]) if (c[k] !== undefined) out[k] = c[k];
  if (c.qos) {
    const q = c.qos as Record<string, unknown>;
    out.qos = Object.fromEntries(["pcp", "dscp", "rateMbps", "burstKb"].filter((k) => q[k] !== undefined).map((k) => [k, q[k]]));
  }
  if (c.acl !== undefined) out.acl = c.acl;
  if (c.aclDefault !== undefined) out.aclDefault = c.aclDefault;
  // service "l3" (PROTOCOL.md §5): the gateway (its MAC in PROTOCOL.md §2's form) and the domain
  if (c.gateway !== undefined) {
    const g = c.gateway as { ips: string[]; mac: string };
    out.gateway = { ips: g.ips, mac: normMac(g.mac) };
  }
  if (c.l3domain !== undefined) out.l3domain = c.l3domain;
  const l3 = l3OfProfile(out as unknown as VnProfile);
  if (Array.isArray(l3)) throw new ProtocolError("bad-request", `${field}${l3[0].slice("profile".length)}: ${l3[1]}`, `${field}${l3[0].slice("profile".length)}`);
  return out as unknown as VnProfile;
}

/** 16 bytes per address (IPv4 as ::ffff:a.b.c.d, RFC 4291 §2.5.5.2), for the RFC 7432 §15 "lower IP" rule. */
export function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...ip.split(".").map(Number)]);
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  const canon = new URL(`http://[${ip}]`).hostname.slice(1, -1);
  const [h, t] = canon.includes("::") ? canon.split("::") : [canon, undefined];
  const head = h ? h.split(":") : [];
  const tail = t ? t.split(":") : [];
  const groups = t === undefined ? head : [...head, ...Array(8 - head.length - tail.length).fill("0"), ...tail];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/** RFC 7432 §15 winner between two announcements of one MAC: higher seq, then lower underlay IP. */
export function beats(a: { seq: number; ip: string }, b: { seq: number; ip: string }): boolean {
  if (a.seq !== b.seq) return a.seq > b.seq;
  return Buffer.compare(ipBytes(a.ip), ipBytes(b.ip)) < 0;
}

const vtepKey = (vn: number, nve: string) => `${vn}|${nve}`;
const bindKey = (vn: number, mac: string) => `${vn}|${mac}`;

export function vnRecord(v: StoredVn): VnRecord {
  const r: Record<string, unknown> = { name: v.name, id: v.id };
  if (v.alias !== undefined) r.alias = v.alias;
  r.vni = v.vni;
  r.profile = v.profile;
  return r as unknown as VnRecord;
}

export function bindRecord(b: StoredBind): BindRecord {
  const r: BindRecord = { nve: b.nve, ip: b.ip, ips: b.ips, seq: b.seq };
  if (b.frozen) r.duplicate = true;
  if (b.next) r.next = { nve: b.next.nve, ip: b.next.ip };
  return r;
}

export class ImaCore {
  readonly vns = new Map<number, StoredVn>();
  private byName = new Map<string, number>();
  private byAlias = new Map<string, number>();
  private byVni = new Map<number, number>();
  readonly vteps = new Map<string, StoredVtep>();
  private vtepsOf = new Map<number, Set<string>>();
  readonly binds = new Map<string, StoredBind>();
  private bindsOf = new Map<number, Set<string>>();
  /** routing domains (L3 service) by id */
  readonly l3domains = new Map<number, StoredL3Domain>();
  /** topic → payload the broker acknowledged last (mirrors the `pub` collection) */
  readonly published = new Map<string, string>();
  private undoLog: (() => void)[] | null = null;
  private batchUndo: (() => void)[] = [];
  private dirty = new Map<string, { c: ImaCollection; key: string }>();
  private logs: string[] = [];
  /** moves decided in the batch being run (see moved()) */
  private batchMoves = 0;
  /** refusals: once per requester, op and code every 10 s (issue 10), in the batch's log order */
  private readonly refusal = rateLimitedLog((l) => this.logs.push(l));

  /** NVE id → the underlay IP listed for it (§6); replaced by reconfigure() */
  nveIps: ReadonlyMap<string, string>;

  constructor(readonly settings: ImaSettings, private readonly now: () => number = Date.now, private readonly log: (l: string) => void = () => {}) {
    this.nveIps = new Map(settings.nves.map((n) => [n.id, normIp(n.ip)]));
  }

  /**
   * NVEs whose state in the store no longer matches the configuration: not
   * listed any more, or listed with another IP than the one their flood-list
   * entries carry. The service purges them at start (seed §3.1 containment).
   */
  strayNves(): string[] {
    const out = new Set<string>();
    for (const t of this.vteps.values()) if (this.nveIps.get(t.nve) !== t.ip) out.add(t.nve);
    for (const b of this.binds.values()) if (!b.withdrawn && this.nveIps.get(b.nve) !== b.ip) out.add(b.nve);
    return [...out].sort();
  }

  /**
   * A reload (issue 13): the operators, the NVE list and the duplicate
   * detection numbers replaced. core.run() is synchronous, so no batch sees
   * half of it; requests are authorized against the new lists from the next
   * batch on. Returns the NVEs whose state no longer matches (strayNves):
   * the caller purges them as a start does (§6, seed §3.1 containment).
   * Moves already recorded keep their times; the new window applies to them.
   */
  reconfigure(s: Pick<ImaSettings, "operators" | "nves" | "dupMoves" | "dupWindowMs">): string[] {
    this.settings.operators = [...s.operators];
    this.settings.nves = s.nves.map((n) => ({ id: n.id, ip: normIp(n.ip) }));
    this.settings.dupMoves = s.dupMoves;
    this.settings.dupWindowMs = s.dupWindowMs;
    this.nveIps = new Map(this.settings.nves.map((n) => [n.id, n.ip]));
    return this.strayNves();
  }

  /** Restores memory from the store. */
  load(db: ImaDb): void {
    for (const [k, v] of db.list("vns")) this.set("vns", k, v, false);
    for (const [k, v] of db.list("vteps")) this.set("vteps", k, v, false);
    for (const [k, v] of db.list("binds")) this.set("binds", k, v, false);
    for (const [k, v] of db.list("l3domains")) this.set("l3domains", k, v, false);
    for (const [k, v] of db.list("pub")) this.published.set(k, v);
  }

  // ------------------------------------------------------------ memory with indexes and undo

  private mapOf(c: string): Map<any, any> {
    return (c === "vns" ? this.vns : c === "vteps" ? this.vteps : c === "l3domains" ? this.l3domains : this.binds) as Map<any, any>;
  }

  private set(c: "vns" | "vteps" | "binds" | "l3domains", key: string, value: any, track = true): void {
    const map = this.mapOf(c);
    const mk = c === "vns" || c === "l3domains" ? Number(key) : key;
    const prev = map.get(mk);
    if (track && this.undoLog) this.undoLog.push(() => this.set(c, key, prev ?? null, false));
    if (track) this.dirty.set(`${c}|${key}`, { c, key });
    if (prev) this.unindex(c, prev);
    if (value) {
      map.set(mk, value);
      this.index(c, value);
    } else map.delete(mk);
  }

  private index(c: string, v: any): void {
    if (c === "l3domains") return;
    if (c === "vns") {
      this.byName.set(v.name, v.id);
      if (v.alias !== undefined) this.byAlias.set(v.alias, v.id);
      this.byVni.set(v.vni, v.id);
    } else {
      const idx = c === "vteps" ? this.vtepsOf : this.bindsOf;
      let s = idx.get(v.vn);
      if (!s) idx.set(v.vn, (s = new Set()));
      s.add(c === "vteps" ? v.nve : v.mac);
    }
  }

  private unindex(c: string, v: any): void {
    if (c === "l3domains") return;
    if (c === "vns") {
      this.byName.delete(v.name);
      if (v.alias !== undefined) this.byAlias.delete(v.alias);
      this.byVni.delete(v.vni);
    } else {
      const idx = c === "vteps" ? this.vtepsOf : this.bindsOf;
      const s = idx.get(v.vn);
      s?.delete(c === "vteps" ? v.nve : v.mac);
      if (s && s.size === 0) idx.delete(v.vn);
    }
  }

  // ------------------------------------------------------------ publishing

  /** The retained payload a key should have now ("" = no retained message). */
  private desired(c: "vns" | "vteps" | "binds" | "l3domains", key: string): Publish {
    if (c === "l3domains") {
      const d = this.l3domains.get(Number(key));
      return { topic: imaTopics.l3domain(Number(key)), payload: d ? JSON.stringify({ id: d.id, vni: d.vni } satisfies L3DomainRecord) : "" };
    }
    if (c === "vns") {
      const v = this.vns.get(Number(key));
      return { topic: imaTopics.vn(Number(key)), payload: v ? JSON.stringify(vnRecord(v)) : "" };
    }
    const i = key.indexOf("|");
    const vn = Number(key.slice(0, i));
    const rest = key.slice(i + 1);
    if (c === "vteps") {
      const t = this.vteps.get(key);
      return { topic: imaTopics.vtep(vn, rest),
        payload: t ? JSON.stringify({ ip: t.ip, ...(t.routerMac ? { routerMac: t.routerMac } : {}) } satisfies VtepRecord) : "" };
    }
    const b = this.binds.get(key);
    return { topic: imaTopics.bind(vn, rest), payload: b && !b.withdrawn ? JSON.stringify(bindRecord(b)) : "" };
  }

  private differs(p: Publish): boolean {
    return (this.published.get(p.topic) ?? "") !== p.payload;
  }

  /** Everything whose retained message differs from what the broker last acknowledged (a restart: issue 6). */
  pendingPublishes(): Publish[] {
    const out: Publish[] = [];
    const seen = new Set<string>();
    const consider = (p: Publish) => {
      seen.add(p.topic);
      if (this.differs(p)) out.push(p);
    };
    for (const id of this.vns.keys()) consider(this.desired("vns", String(id)));
    for (const k of this.vteps.keys()) consider(this.desired("vteps", k));
    for (const k of this.binds.keys()) consider(this.desired("binds", k));
    for (const id of this.l3domains.keys()) consider(this.desired("l3domains", String(id)));
    // Retained messages of things that no longer exist: clear them.
    for (const t of this.published.keys()) if (!seen.has(t)) out.push({ topic: t, payload: "" });
    return out;
  }

  /** Every retained message as it should be (after the broker lost its state). */
  allPublishes(): Publish[] {
    const out: Publish[] = [];
    for (const id of this.vns.keys()) out.push(this.desired("vns", String(id)));
    for (const k of this.vteps.keys()) out.push(this.desired("vteps", k));
    for (const k of this.binds.keys()) { const p = this.desired("binds", k); if (p.payload) out.push(p); }
    for (const id of this.l3domains.keys()) out.push(this.desired("l3domains", String(id)));
    return out;
  }

  /** The broker acknowledged these: returns the `pub` writes that record it. */
  published_(ps: Publish[]): { c: ImaCollection; key: string; value: unknown }[] {
    return ps.map((p) => {
      if (p.payload) this.published.set(p.topic, p.payload);
      else this.published.delete(p.topic);
      return { c: "pub" as const, key: p.topic, value: p.payload || null };
    });
  }

  // ------------------------------------------------------------ batches

  /** Seeds the catalog from the configuration (a new store only). */
  seed(vns: VnSeed[], where = "vns"): BatchResult {
    return this.batch((run) => {
      vns.forEach((s, i) => run(() => {
        try {
          this.create({ vn: { id: s.id, name: s.name, alias: s.alias }, vni: s.vni, profile: s.profile }, true);
        } catch (e) {
          if (e instanceof ProtocolError) throw new ProtocolError(e.code, `${where}[${i}]: ${e.message}`, e.field);
          throw e;
        }
      }));
    });
  }

  /** Runs requests in order, each all-or-nothing; returns their responses and the batch's writes and publishes. */
  run(reqs: { who: string; payload: Uint8Array }[]): BatchResult {
    const responses: BatchResult["responses"] = [];
    const res = this.batch((attempt) => {
      for (const { who, payload } of reqs) responses.push({ who, rsp: this.one(who, payload, attempt) });
    });
    res.responses = responses;
    return res;
  }

  private batch(body: (attempt: <T>(fn: () => T) => T) => void): BatchResult {
    const batchUndo: (() => void)[] = (this.batchUndo = []);
    this.dirty = new Map();
    this.logs = [];
    this.batchMoves = 0;
    const attempt = <T>(fn: () => T): T => {
      const mine: (() => void)[] = [];
      this.undoLog = mine;
      try {
        const r = fn();
        batchUndo.push(...mine);
        return r;
      } catch (e) {
        for (let i = mine.length - 1; i >= 0; i--) mine[i]();
        throw e;
      } finally {
        this.undoLog = null;
      }
    };
    try {
      body(attempt);
    } catch (e) {
      for (let i = batchUndo.length - 1; i >= 0; i--) batchUndo[i]();
      this.dirty = new Map();
      throw e;
    }
    const writes: BatchResult["writes"] = [];
    const publishes: Publish[] = [];
    for (const { c, key } of this.dirty.values()) {
      const coll = c as "vns" | "vteps" | "binds" | "l3domains";
      const map = this.mapOf(coll);
      writes.push({ c, key, value: map.get(coll === "vns" || coll === "l3domains" ? Number(key) : key) ?? null });
      const p = this.desired(coll, key);
      if (this.differs(p)) publishes.push(p);
    }
    for (const l of this.logs) this.log(l);
    return { responses: [], writes, publishes, moves: this.batchMoves, undo: () => { for (let i = batchUndo.length - 1; i >= 0; i--) batchUndo[i](); } };
  }

  /**
   * An NVE that stayed offline (its will, PROTOCOL.md §3) longer than the
   * configured hold: it leaves every flood list and its bindings are withdrawn
   * (containment, seed §3.1). If it comes back, its IMA client joins and
   * announces again.
   */
  purgeNve(nve: string, why = "offline beyond its hold"): BatchResult {
    return this.batch((attempt) => attempt(() => {
      let vteps = 0, binds = 0;
      for (const [k, t] of [...this.vteps]) if (t.nve === nve) { this.set("vteps", k, null); vteps++; }
      for (const [k, b] of [...this.binds]) {
        if (b.next?.nve === nve) this.set("binds", k, withoutNext(b));
        if (b.nve !== nve || b.withdrawn) continue;
        const next: StoredBind = { ...b, withdrawn: true };
        delete next.frozen;
        delete next.next;
        this.set("binds", k, next);
        binds++;
      }
      if (vteps || binds) this.logs.push(`ima: ${nve} ${why}: left ${vteps} flood lists, ${binds} bindings withdrawn`);
    }));
  }

  private one(who: string, payload: Uint8Array, attempt: <T>(fn: () => T) => T): Record<string, unknown> {
    const d = decodeImaRequest(payload, this.settings.maxPayload);
    if (!d.ok) {
      this.refusal(`${who}|${d.error.code}`, `ima: request from ${who} refused: ${d.error.code}: ${d.error.message}`);
      return errorResponse(d.id, d.error) as Record<string, unknown>;
    }
    const r = d.req;
    try {
      this.authorize(who, r.op);
      const out = attempt(() => this.dispatch(who, r));
      return { id: r.id, ok: true, ...out };
    } catch (e) {
      if (!(e instanceof ProtocolError)) {
        this.logs.push(`ima: request ${r.id} (${r.op}) from ${who}: internal error: ${(e as Error).stack ?? e}`);
        return errorResponse(r.id, new ProtocolError("internal", (e as Error).message)) as Record<string, unknown>;
      }
      this.refusal(`${who}|${r.op}|${e.code}`, `ima: request ${r.id} (${r.op}) from ${who}: ${e.code}: ${e.message}`);
      return errorResponse(r.id, e) as Record<string, unknown>;
    }
  }

  /**
   * §6: operator ops for the configured operators only; NVE ops for the NVEs
   * of the `nves` list only (an operator may also resolve a VN: it sees the
   * catalog anyway). Anyone else is `not-authorized` for everything.
   */
  private authorize(who: string, op: string): void {
    const operator = this.settings.operators.includes(who);
    if ((IMA_OPERATOR_OPS as readonly string[]).includes(op)) {
      if (!operator) throw new ProtocolError("not-authorized", `${who} is not an operator of IMA ${this.settings.ima} (its configuration's "operators")`, "op");
      return;
    }
    if (this.nveIps.has(who) || (op === "vn.resolve" && operator)) return;
    throw new ProtocolError("not-authorized", `${who} is not an NVE of IMA ${this.settings.ima} (its configuration's "nves")`, "op");
  }

  /** §6: an NVE uses only the underlay IP listed for it, and that is a unicast address. */
  private ownIp(who: string, ipText: string): string {
    const ip = normIp(ipText);
    if (!isUnicastIp(ip)) throw new ProtocolError("not-authorized", `${ipText} is not a unicast address (0.0.0.0, loopback, multicast and broadcast never name an NVE)`, "ip");
    const listed = this.nveIps.get(who);
    if (ip !== listed) throw new ProtocolError("not-authorized", `${who} may use only its own underlay IP ${listed} (the IMA configuration's "nves"), not ${ipText}`, "ip");
    return ip;
  }

  private dispatch(who: string, r: Record<string, any>): Record<string, unknown> {
    switch (r.op) {
      case "vn.resolve": return this.result(this.resolve(r.vn));
      case "vtep.join": return this.join(who, r.vn, r.ip, r.routerMac);
      case "vtep.leave": return this.leave(who, r.vn, r.ip);
      case "bind.announce": return this.announce(who, r.vn, r.mac, r.ips ?? []);
      case "bind.withdraw": return this.withdraw(who, r.vn, r.mac);
      case "bind.prepare": return this.prepare(who, r.vn, r.mac);
      case "vn.create": return this.result(this.create(r, false));
      case "vn.delete": return this.remove(r.vn);
      case "vn.set-profile": return this.setProfile(r.vn, r.profile);
      case "vn.list": return { vns: [...this.vns.values()].sort((a, b) => a.id - b.id).map(vnRecord) };
      case "mac.frozen": return this.frozen(r.vn);
      case "mac.unfreeze": return this.unfreeze(r.vn, r.mac);
      case "l3domain.create": return this.l3Create(r.l3domain, r.vni);
      case "l3domain.delete": return this.l3Delete(r.l3domain);
      case "l3domain.list": return { l3domains: [...this.l3domains.values()].sort((a, b) => a.id - b.id).map((d) => ({ id: d.id, vni: d.vni })) };
    }
    throw new ProtocolError("unknown-op", `unknown op "${r.op}"`, "op");
  }

  /** §2: responses carry every reference that exists, plus the VNI and profile. */
  private result(v: StoredVn): Record<string, unknown> {
    const vn: Record<string, unknown> = { id: v.id, name: v.name };
    if (v.alias !== undefined) vn.alias = v.alias;
    return { vn, vni: v.vni, profile: v.profile };
  }

  resolve(ref: VnRef, field = "vn"): StoredVn {
    let id: number | undefined;
    if ("id" in ref) id = ref.id;
    else if ("name" in ref) id = this.byName.get(ref.name);
    else if ("alias" in ref) id = this.byAlias.get(ref.alias);
    const v = id === undefined ? undefined : this.vns.get(id);
    if (!v) throw new ProtocolError("unknown-vn", `no VN ${JSON.stringify(ref)} in the IMA's catalog`, field);
    return v;
  }

  // ------------------------------------------------------------ catalog (operators)

  private create(r: Record<string, any>, seeding: boolean): StoredVn {
    const v = (r.vn ?? {}) as { id?: number; name?: string; alias?: string };
    for (const k of ["alias", "name"] as const)
      if (r[k] !== undefined && v[k] !== undefined && r[k] !== v[k])
        throw new ProtocolError("bad-request", `${k} given twice with different values (${JSON.stringify(r[k])} and vn.${k} ${JSON.stringify(v[k])})`, k);
    const alias: string | undefined = v.alias ?? r.alias;
    const name: string | undefined = v.name ?? r.name;
    if (alias === undefined && !seeding) throw new ProtocolError("bad-request", "alias: is required (PROTOCOL.md §6 vn.create)", "alias");
    const profile = canonProfile(r.profile);
    // Idempotence (§2): the same create again returns the same VN and changes nothing.
    const existing = alias !== undefined ? this.byAlias.get(alias) : name !== undefined ? this.byName.get(name) : undefined;
    if (existing !== undefined) {
      const e = this.vns.get(existing)!;
      const same = (v.id === undefined || v.id === e.id) && (name === undefined || name === e.name) && (alias === undefined || alias === e.alias)
        && (r.vni === undefined || r.vni === e.vni) && (r.profile === undefined || JSON.stringify(profile) === JSON.stringify(e.profile));
      if (same) return e;
      if (alias !== undefined && this.byAlias.has(alias)) throw new ProtocolError("bad-request", `alias "${alias}" is already VN ${existing}'s`, "alias");
      throw new ProtocolError("bad-request", `name ${name} is already VN ${existing}'s`, "name");
    }
    if (v.id !== undefined && this.vns.has(v.id))
      throw new ProtocolError("bad-request", `VN id ${v.id} already exists${this.vns.get(v.id)!.alias !== undefined ? ` (alias "${this.vns.get(v.id)!.alias}")` : ""}`, "vn.id");
    if (name !== undefined && this.byName.has(name)) throw new ProtocolError("bad-request", `name ${name} is already VN ${this.byName.get(name)}'s`, "name");
    if (alias !== undefined && this.byName.has(alias)) throw new ProtocolError("bad-request", `alias "${alias}" is VN ${this.byName.get(alias)}'s name`, "alias");
    if (r.vni !== undefined && this.byVni.has(r.vni)) throw new ProtocolError("bad-request", `VNI ${r.vni} is already VN ${this.byVni.get(r.vni)}'s`, "vni");
    let id = v.id;
    if (id === undefined) {
      id = 1;
      while (this.vns.has(id) && id <= MAX_VN) id++;
      if (id > MAX_VN) throw new ProtocolError("limit-exceeded", "every VN id 1..16777215 is taken", "vn.id");
    }
    let vni: number | undefined = r.vni;
    if (vni === undefined) {
      vni = this.settings.vniBase;
      while ((this.byVni.has(vni) || vni === 0xffffff || [...this.l3domains.values()].some((d) => d.vni === vni)) && vni <= MAX_VN) vni++;
      if (vni > MAX_VN) throw new ProtocolError("limit-exceeded", `every VNI from ${this.settings.vniBase} up is taken`, "vni");
    }
    checkVni(profile, vni);
    this.checkL3(profile, vni);
    const rec: StoredVn = { id, name: name ?? randomUUID(), ...(alias !== undefined ? { alias } : {}), vni, profile };
    this.set("vns", String(id), rec);
    this.logs.push(`ima: VN ${id} created (alias ${alias ?? "-"}, name ${rec.name}, VNI ${vni}, ${profile.encap})`);
    return rec;
  }

  private remove(ref: VnRef): Record<string, unknown> {
    const v = this.resolve(ref);
    // Seed §3.1 containment: the VN's flood list and bindings go with it.
    const vteps = [...(this.vtepsOf.get(v.id) ?? [])];
    const macs = [...(this.bindsOf.get(v.id) ?? [])];
    for (const nve of vteps) this.set("vteps", vtepKey(v.id, nve), null);
    for (const mac of macs) this.set("binds", bindKey(v.id, mac), null);
    this.set("vns", String(v.id), null);
    this.logs.push(`ima: VN ${v.id} deleted with ${vteps.length} flood-list entries and ${macs.length} bindings`);
    return this.result(v);
  }

  private setProfile(ref: VnRef, p: unknown): Record<string, unknown> {
    const v = this.resolve(ref);
    const profile = canonProfile(p);
    checkVni(profile, v.vni);
    this.checkL3(profile, v.vni);
    if (JSON.stringify(profile) !== JSON.stringify(v.profile)) {
      this.set("vns", String(v.id), { ...v, profile });
      this.logs.push(`ima: VN ${v.id} profile changed (seed §4.5)`);
    }
    return this.result(this.vns.get(v.id)!);
  }

  // ------------------------------------------------------------ routing domains (L3 service)

  /**
   * A routed VN's domain is declared, and no L3 VNI is a VN's VNI (PROTOCOL.md
   * §5, §6): a frame on the L3 VNI is routed, on a VN's VNI bridged.
   */
  private checkL3(profile: VnProfile, vni: number): void {
    if (profile.service === "l3" && profile.l3domain !== undefined && !this.l3domains.has(profile.l3domain))
      throw new ProtocolError("bad-request", `profile.l3domain: l3domain ${profile.l3domain} is not declared (l3domain.create first)`, "profile.l3domain");
    for (const d of this.l3domains.values())
      if (d.vni === vni) throw new ProtocolError("bad-request", `VNI ${vni} is the L3 VNI of l3domain ${d.id}`, "vni");
  }

  /** l3domain.create: idempotent for the same VNI (§2); another VNI for an existing domain is refused. */
  private l3Create(id: number, vni: number): Record<string, unknown> {
    const cur = this.l3domains.get(id);
    if (cur) {
      if (cur.vni === vni) return { l3domain: id, vni };
      throw new ProtocolError("bad-request", `l3domain ${id} already has L3 VNI ${cur.vni}`, "l3domain");
    }
    if (this.byVni.has(vni)) throw new ProtocolError("bad-request", `L3 VNI ${vni} is the VNI of VN ${this.byVni.get(vni)}`, "vni");
    for (const d of this.l3domains.values())
      if (d.vni === vni) throw new ProtocolError("bad-request", `L3 VNI ${vni} is already l3domain ${d.id}'s`, "vni");
    this.set("l3domains", String(id), { id, vni });
    this.logs.push(`ima: l3domain ${id} created (L3 VNI ${vni})`);
    return { l3domain: id, vni };
  }

  /** l3domain.delete: refused while a VN routes in it (its profile names it). */
  private l3Delete(id: number): Record<string, unknown> {
    const d = this.l3domains.get(id);
    if (!d) throw new ProtocolError("bad-request", `no l3domain ${id}`, "l3domain");
    const users = [...this.vns.values()].filter((v) => v.profile.l3domain === id).map((v) => v.id);
    if (users.length) throw new ProtocolError("bad-request", `l3domain ${id} is used by VN ${users.join(", ")}`, "l3domain");
    this.set("l3domains", String(id), null);
    this.logs.push(`ima: l3domain ${id} deleted`);
    return { l3domain: id, vni: d.vni };
  }

  /** Seeds routing domains from the configuration (a new store only, before its VNs). */
  seedL3(domains: { id: number; vni: number }[]): BatchResult {
    return this.batch((run) => {
      domains.forEach((d, i) => run(() => {
        try {
          this.l3Create(d.id, d.vni);
        } catch (e) {
          if (e instanceof ProtocolError) throw new ProtocolError(e.code, `l3domains[${i}]: ${e.message}`, e.field);
          throw e;
        }
      }));
    });
  }

  // ------------------------------------------------------------ flood lists

  private join(who: string, ref: VnRef, ipText: string, routerMacText?: string): Record<string, unknown> {
    const ip = this.ownIp(who, ipText);
    const v = this.resolve(ref);
    const k = vtepKey(v.id, who);
    const cur = this.vteps.get(k);
    const routerMac = routerMacText === undefined ? undefined : normMac(routerMacText);
    if (!cur || cur.ip !== ip || cur.routerMac !== routerMac) {
      this.set("vteps", k, { vn: v.id, nve: who, ip, ...(routerMac ? { routerMac } : {}) });
      // The NVE's bindings in this VN carry its underlay address: follow a change.
      for (const mac of this.bindsOf.get(v.id) ?? []) {
        const b = this.binds.get(bindKey(v.id, mac))!;
        if (b.nve === who && b.ip !== ip) this.set("binds", bindKey(v.id, mac), { ...b, ip });
      }
      this.logs.push(`ima: ${who} (${ip}) joined the flood list of VN ${v.id}`);
    }
    return this.result(v);
  }

  private leave(who: string, ref: VnRef, ipText: string | undefined): Record<string, unknown> {
    if (ipText !== undefined) this.ownIp(who, ipText);
    const v = this.resolve(ref);
    const k = vtepKey(v.id, who);
    if (this.vteps.has(k)) {
      this.set("vteps", k, null);
      // Containment (seed §3.1): an NVE that no longer serves the VN has no bindings in it.
      let n = 0;
      for (const mac of this.bindsOf.get(v.id) ?? []) {
        const b = this.binds.get(bindKey(v.id, mac))!;
        if (b.nve === who && !b.withdrawn) {
          this.set("binds", bindKey(v.id, mac), { ...b, withdrawn: true, frozen: undefined, next: undefined });
          n++;
        } else if (b.next?.nve === who) this.set("binds", bindKey(v.id, mac), withoutNext(b));
      }
      this.logs.push(`ima: ${who} left the flood list of VN ${v.id}; ${n} of its bindings withdrawn`);
    }
    return {};
  }

  // ------------------------------------------------------------ bindings (RFC 7432 §15)

  private announce(who: string, ref: VnRef, macText: string, ipsText: string[]): Record<string, unknown> {
    const v = this.resolve(ref);
    const vtep = this.vteps.get(vtepKey(v.id, who));
    // A flood-list entry with another IP than the listed one (an older
    // configuration) counts as no join: the NVE joins again with its own IP.
    if (!vtep || vtep.ip !== this.nveIps.get(who)) throw new ProtocolError("not-connected", `${who} has not joined VN ${v.id} (vtep.join first, PROTOCOL.md §6)`, "vn");
    const mac = normMac(macText);
    const ips = [...new Set(ipsText.map(normIp))].sort();
    const k = bindKey(v.id, mac);
    const cur = this.binds.get(k);
    const now = this.now();
    const mine = { nve: who, ip: vtep.ip };
    let next: StoredBind;
    if (!cur) {
      next = { vn: v.id, mac, ...mine, ips, seq: 0, moves: [] };
    } else if (cur.nve === who) {
      // The holder again (an IP update, a repeat, or a return after its own withdraw): same sequence.
      next = { ...cur, ...mine, ips, withdrawn: undefined };
    } else {
      // A move (RFC 7432 §15): the holder's sequence + 1, assigned here. At
      // the 32-bit ceiling the number stays; the move still wins (NVE clients
      // take any other NVE's record with a sequence >= theirs as a move).
      const want = Math.min(cur.seq + 1, MAX_SEQ);
      if (!cur.withdrawn && cur.frozen)
        throw new ProtocolError("address-conflict", `MAC ${mac} in VN ${v.id} is frozen at ${cur.nve} as a duplicate (moved more than ${this.settings.dupMoves} times in ${this.settings.dupWindowMs / 1000} s, RFC 7432 §15); moves are refused until an operator unfreezes it (mac.unfreeze) or ${cur.nve} withdraws it`, "mac");
      // A move. RFC 7432 §15: N moves within M seconds mark the MAC a duplicate.
      const recent = cur.moves.filter((t) => now - t < this.settings.dupWindowMs);
      if (recent.length + 1 > this.settings.dupMoves && !cur.withdrawn) {
        // The freeze is the IMA's own decision and outlives the refused request:
        // it is logged in the batch's undo (store failure), not the request's.
        const reqUndo = this.undoLog;
        this.undoLog = this.batchUndo;
        this.set("binds", k, { ...cur, moves: recent, frozen: true });
        this.undoLog = reqUndo;
        this.logs.push(`ALERT ima: duplicate MAC ${mac} in VN ${v.id}: move ${recent.length + 1} in ${this.settings.dupWindowMs / 1000} s (${cur.nve} → ${who}); frozen at ${cur.nve} (RFC 7432 §15)`);
        throw new ProtocolError("address-conflict", `MAC ${mac} in VN ${v.id} moved more than ${this.settings.dupMoves} times in ${this.settings.dupWindowMs / 1000} s: flagged duplicate and frozen at ${cur.nve} (RFC 7432 §15); this move is refused`, "mac");
      }
      next = { vn: v.id, mac, ...mine, ips, seq: want, moves: [...recent, now] };
      this.moved();
      this.logs.push(`ima: MAC ${mac} in VN ${v.id} moved ${cur.nve} → ${who} (seq ${cur.seq} → ${next.seq})`);
    }
    if (next.frozen === undefined) delete next.frozen;
    if (next.withdrawn === undefined) delete next.withdrawn;
    if (next.next === undefined) delete next.next;
    if (!cur || JSON.stringify(cur) !== JSON.stringify(next)) this.set("binds", k, next);
    return { vn: { id: v.id }, mac, seq: next.seq };
  }

  /**
   * The metrics hook: one MAC move decided (RFC 7432 §15: another NVE took
   * the MAC, with the holder's seq + 1). Counted in the batch, and uncounted
   * if the request is rolled back; a refused move (frozen, or the one that
   * freezes) is not a move. The batch's `moves` reaches the counter only once
   * the store took the batch (service.ts), so the counter never goes back.
   */
  private moved(): void {
    this.batchMoves++;
    this.undoLog?.push(() => { this.batchMoves--; });
  }

  // ------------------------------------------------------------ duplicates (operators, §6)

  /** Every MAC frozen as a duplicate (RFC 7432 §15), in one VN or all. */
  private frozen(ref: VnRef | undefined): Record<string, unknown> {
    const only = ref ? this.resolve(ref).id : undefined;
    const macs = [...this.binds.values()]
      .filter((b) => b.frozen && !b.withdrawn && (only === undefined || b.vn === only))
      .sort((a, b) => a.vn - b.vn || (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0))
      .map((b) => ({ vn: { id: b.vn }, mac: b.mac, nve: b.nve, ip: b.ip, seq: b.seq, moves: b.moves.length }));
    return { macs };
  }

  /**
   * Lifts a duplicate freeze: the binding stays where it is, its move history
   * is cleared, so the next move is accepted (and counted afresh).
   */
  private unfreeze(ref: VnRef, macText: string): Record<string, unknown> {
    const v = this.resolve(ref);
    const mac = normMac(macText);
    const k = bindKey(v.id, mac);
    const cur = this.binds.get(k);
    if (!cur || cur.withdrawn) throw new ProtocolError("bad-request", `no binding of MAC ${mac} in VN ${v.id}`, "mac");
    if (cur.frozen) {
      const next: StoredBind = { ...cur, moves: [] };
      delete next.frozen;
      this.set("binds", k, next);
      this.logs.push(`ima: MAC ${mac} in VN ${v.id} unfrozen by an operator; it stays at ${cur.nve} (seq ${cur.seq})`);
    }
    const b = this.binds.get(k)!;
    return { vn: { id: v.id }, mac, nve: b.nve, ip: b.ip, seq: b.seq };
  }

  private withdraw(who: string, ref: VnRef, macText: string): Record<string, unknown> {
    const v = this.resolve(ref);
    const mac = normMac(macText);
    const k = bindKey(v.id, mac);
    const cur = this.binds.get(k);
    // Only the holder withdraws; a withdraw by an NVE the MAC moved away from changes nothing.
    if (cur && !cur.withdrawn && cur.nve === who) {
      const next: StoredBind = { ...cur, withdrawn: true };
      delete next.frozen;
      delete next.next;
      this.set("binds", k, next);
    } else if (cur?.next?.nve === who) {
      // The NVE that pre-associated the MAC gave it up (the migration was called off): no more forwarding to it.
      this.set("binds", k, withoutNext(cur));
    }
    return {};
  }

  /**
   * bind.prepare (issue 15, hitless migration; RFC 8394 §3 "Associated"): an
   * NVE pre-associated the MAC, so the VM is about to move there. The
   * binding stays with its holder and keeps its sequence; `next` names the
   * preparing NVE so that the holder's migration hold forwards the MAC's
   * frames there instead of dropping them (make before break). The move
   * itself is still the announcement (holder's seq + 1), which then only
   * confirms. Nothing to prepare for a MAC nobody holds, a MAC the NVE holds
   * itself, or one frozen as a duplicate (its move would be refused).
   */
  private prepare(who: string, ref: VnRef, macText: string): Record<string, unknown> {
    const v = this.resolve(ref);
    const vtep = this.vteps.get(vtepKey(v.id, who));
    if (!vtep || vtep.ip !== this.nveIps.get(who)) throw new ProtocolError("not-connected", `${who} has not joined VN ${v.id} (vtep.join first, PROTOCOL.md §6)`, "vn");
    const mac = normMac(macText);
    const k = bindKey(v.id, mac);
    const cur = this.binds.get(k);
    if (!cur || cur.withdrawn || cur.frozen || cur.nve === who) return { vn: { id: v.id }, mac, nve: cur && !cur.withdrawn ? cur.nve : null };
    if (cur.next?.nve !== who || cur.next.ip !== vtep.ip) {
      this.set("binds", k, { ...cur, next: { nve: who, ip: vtep.ip } });
      this.logs.push(`ima: MAC ${mac} in VN ${v.id} pre-associated at ${who}; ${cur.nve} forwards it there while it holds it for migration`);
    }
    return { vn: { id: v.id }, mac, nve: cur.nve };
  }
}

function withoutNext(b: StoredBind): StoredBind {
  const out = { ...b };
  delete out.next;
  return out;
}

function checkVni(profile: VnProfile, vni: number): void {
  if (profile.encap === "nvgre" && (vni <= 0xfff || vni === 0xffffff))
    throw new ProtocolError("bad-request", `VSID ${vni} is reserved for NVGRE (RFC 7637 §3.2: 0-0xFFF and 0xFFFFFF)`, "vni");
}
