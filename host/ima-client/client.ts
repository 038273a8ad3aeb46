// The NVE side of PROTOCOL.md §6 (issue 6 "The NVE side"): an IMA client that
// the NVE service drives with its own state and that programs what the IMA
// publishes into the data plane.
//
// The client is a reconciler, so retries, restarts and reconnects need no
// special cases: the NVE tells it the desired state — which VNs it serves
// (setServed: a VN is served while at least one VAP of it is Connected, RFC
// 8394 §3) and its local bindings (applyLocal: every MAC of a VNIC, active or
// not) — and per VN / per MAC one worker at a time sends what differs from what
// the IMA acknowledged or published (vtep.join/leave, bind.announce/withdraw).
//
// What it announces (seed §4.3): an activated binding; it stays announced while
// its VNIC is deactivated (suspend, or a migration hold within the NVE: no
// withdraw/re-announce), and is withdrawn when the binding goes (disassociation,
// shutdown, hold expiry). A pre-associated binding (RFC 8394 "Associated",
// never activated) is not announced: the VM is still elsewhere.
//
// Mobility (RFC 7432 §15): the IMA assigns sequence numbers (PROTOCOL.md §6:
// an announcement from another NVE than the holder is a move, holder's seq +
// 1); the client sends none. When a binding the NVE holds shows up at another
// NVE with a sequence at least its own — or the IMA refuses an announcement
// because the MAC is elsewhere — `onMoved` tells the NVE to withdraw its local
// binding and send its agent `addr.disassociated` with reason `moved`.
//
// Hitless migration (issue 15, make before break): a pre-associated binding is
// told to the IMA with bind.prepare, so its record at the holder names this
// NVE as `next`; while the holder's own binding is inactive (its VNIC held for
// migration, or suspended), the holder forwards the MAC's frames to `next`
// (mac.remote toward it) instead of dropping them (dst-inactive). The move's
// announcement then only confirms what the data planes already do. The NVE's
// own commit carries these re-pointed entries (overlay, called by
// host/control core.ts commitGroup), so the data plane never holds the
// inactive local entry in between.
//
// Data plane (host/dataplane/ops.ts): flood.join/leave for every other NVE on a
// served VN's flood list; mac.remote + ip for every binding held elsewhere,
// except where a local binding is active (the NVE's own mac.local wins there);
// mac.del/ip.del when it goes; `vn` when a served VN's profile or VNI changes.
import type { MqttLike } from "../protocol/mqtt-lean.js";
import type { DataPlaneProgrammer, DpOp, VnProfile } from "../dataplane/ops.js";
import { normIp, normMac } from "../domain/addr-text.js";
import { encode, publishOptions } from "../protocol/codec.js";
import { imaMqttOptions, imaTopics, parseImaTopic, IMA_ROOT, type BindRecord, type VnRecord, type VtepRecord, type L3DomainRecord } from "../protocol/ima.js";
import type { VnRef } from "../protocol/types.js";
import { connectWhenReachable, type BrokerConnection } from "../protocol/mqtt.js";
import { realClock, type Clock } from "../domain/clock.js";

/** One local binding as the NVE holds it (its VnicRecord's (VN, MAC, IPs), the VNIC's port and state). */
export interface LocalBinding { vn: number; mac: string; ips: string[]; port: string; active: boolean }
export type LocalChange = LocalBinding | { vn: number; mac: string; gone: true };

export class ImaRequestError extends Error {
  constructor(public code: string, message: string, public field?: string) {
    super(message);
  }
}

export interface ImaClientOptions {
  /** the NVE's identity ({nve}) */
  nve: string;
  /** its underlay address (the flood-list entry and every binding's `ip`) */
  ip: string;
  /** share an existing connection (the NVE service's) … */
  client?: MqttLike;
  /** … or open one */
  broker?: BrokerConnection;
  programmer: DataPlaneProgrammer;
  /** desired state at start (restored from the NVE's store): served VNs and local bindings */
  served?: Iterable<number>;
  local?: LocalBinding[];
  /** what the NVE has programmed for a VN (its catalog), to detect a profile change made while it was away */
  current?: (vn: number) => { vni: number; profile: VnProfile } | undefined;
  /** a binding this NVE holds is now at another NVE with a winning sequence (RFC 7432 §15) */
  onMoved?: (vn: number, mac: string, by: BindRecord | undefined) => void;
  /** the IMA refused a move of this MAC: it is frozen elsewhere as a duplicate */
  onDuplicate?: (vn: number, mac: string, message: string) => void;
  /** this NVE's router MAC (L3 service): published in its vtep records, the inner source of routed frames */
  routerMac?: string;
  /** a served VN's record changed (profile or VNI); the `vn` op is already applied */
  onProfile?: (vn: VnRecord, prev: VnRecord | undefined) => void;
  /** the IMA deleted a VN this NVE serves */
  onVnDeleted?: (vn: number) => void;
  clock?: Clock;
  /** per request (default 10000) */
  timeoutMs?: number;
  /** first retry delay after a timeout or an internal error, doubled up to 30 s (default 500) */
  retryMs?: number;
  log?: (line: string) => void;
}

interface Acked { ips: string; seq: number }
const keyOf = (vn: number, mac: string) => `${vn}|${mac}`;
/** Request errors the workers retry with backoff (run()); any other code is the IMA's final answer. */
const RETRIED: readonly string[] = ["timeout", "internal", "rate-limited"];
/** True when a withdraw's error is not the IMA's final answer: run() retries it. */
const retried = (e: unknown): boolean => !(e instanceof ImaRequestError) || RETRIED.includes(e.code);
const ipsKey = (ips: string[]) => [...new Set(ips.map(normIp))].sort().join(",");
/** JSON with sorted keys: profiles from a config file and from the IMA compare by content. */
function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  if (v && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`).join(",")}}`;
  return JSON.stringify(v);
}
const splitKey = (k: string): [number, string] => {
  const i = k.indexOf("|");
  return [Number(k.slice(0, i)), k.slice(i + 1)];
};

export class ImaClient {
  readonly nve: string;
  readonly ip: string;
  /** VN catalog as the IMA publishes it (nvo3/v1/ima/vn/+) */
  readonly vns = new Map<number, VnRecord>();
  /** bindings and flood lists of the served VNs, as published */
  readonly records = new Map<string, BindRecord>();
  readonly vteps = new Map<number, Map<string, string>>();
  private routerMacs = new Map<string, string>(); // `${vn}|${nve}` -> its router MAC (vtep record)
  private served = new Set<number>();
  private local = new Map<string, LocalBinding>();
  private joined = new Map<number, string>();
  private announced = new Map<string, Acked>();
  /** keys whose pre-association the IMA acknowledged (bind.prepare), to be withdrawn if it goes unannounced */
  private prepared = new Set<string>();
  private refused = new Map<string, string>();
  private dpRemote = new Map<string, string>(); // key → underlay IP programmed by mac.remote
  private ipProg = new Map<string, string>();   // `${vn}|${ip}` → key whose remote record programmed it
  private progIps = new Map<string, Set<string>>(); // key → those IPs
  private running = new Map<string, boolean>(); // worker key → "run again"
  private retry = new Map<string, { handle: unknown; delay: number }>();
  private pending = new Map<string, { resolve: (r: Record<string, any>) => void; reject: (e: Error) => void; timer: unknown }>();
  private seqNo = 0;
  /** request ids are unique per requester identity across restarts and connections (§1) */
  private readonly boot = Math.random().toString(36).slice(2, 10);
  private dpChain: Promise<void> = Promise.resolve();
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  private readonly clock: Clock;
  private readonly log: (l: string) => void;
  private readonly pv: number;
  /** counters for benches and `nvedge show` */
  readonly stats = { requests: 0, received: 0, dpOps: 0 };

  private constructor(readonly client: MqttLike, private readonly own: boolean, private readonly o: ImaClientOptions) {
    this.nve = o.nve;
    this.ip = normIp(o.ip);
    this.clock = o.clock ?? realClock;
    this.log = o.log ?? (() => {});
    this.pv = o.broker?.protocolVersion ?? (client.options.protocolVersion === 5 ? 5 : 4);
    for (const v of o.served ?? []) this.served.add(v);
    for (const b of o.local ?? []) this.local.set(keyOf(b.vn, normMac(b.mac)), { ...b, mac: normMac(b.mac), ips: b.ips.map(normIp) });
  }

  static async start(o: ImaClientOptions): Promise<ImaClient> {
    let client = o.client;
    const own = !client;
    if (!client) {
      if (!o.broker) throw new Error("ImaClient: give either client or broker");
      // a broker not up yet is waited for, not a failed start
      client = await connectWhenReachable(o.broker.url, (l) => (o.log ?? (() => {}))(`ima client: ${l}`),
        imaMqttOptions({ username: o.nve, ...o.broker }, `${o.nve}-ima-${Math.random().toString(16).slice(2, 10)}`, true));
    }
    // (connectWhenReachable set TCP_NODELAY and the per-turn writes on its own client: mqtt.ts tcpNoDelay)
    const c = new ImaClient(client, own, o);
    client.on("message", c.onMessage);
    // Retained messages arrive again after a reconnect with a clean session; the
    // reconciler treats repeats as no change and re-sends anything unacknowledged.
    client.on("connect", c.onReconnect);
    await c.subscribe([imaTopics.rsp(o.nve), imaTopics.l3domainAll, imaTopics.vnAll, `${IMA_ROOT}vtep/+/${o.nve}`, ...[...c.served].flatMap((v) => [imaTopics.vtepVn(v), imaTopics.bindVn(v)])]);
    for (const v of c.served) c.kick(`vn|${v}`);
    for (const k of c.local.keys()) c.kick(k);
    return c;
  }

  private onReconnect = () => {
    if (this.closed) return;
    void this.subscribe([imaTopics.rsp(this.nve), imaTopics.l3domainAll, imaTopics.vnAll, `${IMA_ROOT}vtep/+/${this.nve}`, ...[...this.served].flatMap((v) => [imaTopics.vtepVn(v), imaTopics.bindVn(v)])])
      .catch((e) => this.log(`ima client: resubscribe: ${(e as Error).message}`));
  };

  private async subscribe(filters: string[]): Promise<void> {
    const granted = await this.client.subscribeAsync(filters, { qos: 1 });
    for (const g of granted) if (g.qos === 128) throw new Error(`the broker refused the subscription ${g.topic} for ${this.nve} (is it listed in the broker's nves?)`);
  }

  // ------------------------------------------------------------ requests (§2 format)

  /** One request to the IMA; resolves with the ok response, rejects with ImaRequestError. */
  request(op: string, body: Record<string, unknown> = {}): Promise<Record<string, any>> {
    if (this.closed) return Promise.reject(new ImaRequestError("internal", "the IMA client is stopped"));
    const id = `${this.boot}-${++this.seqNo}`;
    this.stats.requests++;
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(() => {
        this.pending.delete(id);
        reject(new ImaRequestError("timeout", `no answer from the IMA to ${op} within ${this.o.timeoutMs ?? 10000} ms`));
      }, this.o.timeoutMs ?? 10000);
      this.pending.set(id, { resolve, reject, timer });
      this.client.publish(imaTopics.req(this.nve), encode({ id, op, ...body }), publishOptions(this.pv), (e) => {
        if (!e) return;
        const p = this.pending.get(id);
        if (!p) return;
        this.pending.delete(id);
        this.clock.clearTimer(p.timer);
        reject(new ImaRequestError("internal", `cannot send ${op}: ${e.message}`));
      });
    });
  }

  /** A VN reference not in the NVE's own configuration, through the IMA (vn.resolve); cached from the retained catalog. */
  async resolve(ref: VnRef | number | string): Promise<VnRecord> {
    const r: VnRef = typeof ref === "number" ? { id: ref } : typeof ref === "string" ? (/^\d+$/.test(ref) ? { id: Number(ref) } : /^[0-9a-f-]{36}$/.test(ref) ? { name: ref } : { alias: ref }) : ref;
    for (const v of this.vns.values())
      if (("id" in r && v.id === r.id) || ("name" in r && v.name === r.name) || ("alias" in r && v.alias === r.alias)) return v;
    const rsp = await this.request("vn.resolve", { vn: r });
    const rec: VnRecord = { id: rsp.vn.id, name: rsp.vn.name, ...(rsp.vn.alias !== undefined ? { alias: rsp.vn.alias } : {}), vni: rsp.vni, profile: rsp.profile };
    if (!this.vns.has(rec.id)) this.vns.set(rec.id, rec);
    return rec;
  }

  // ------------------------------------------------------------ desired state (called by the NVE)

  /** The VNs this NVE serves: joins the flood list on the first VAP, leaves on the last (issue 6). */
  async setServed(vns: Iterable<number>): Promise<void> {
    const next = new Set(vns);
    const added = [...next].filter((v) => !this.served.has(v));
    const removed = [...this.served].filter((v) => !next.has(v));
    if (!added.length && !removed.length) return;
    this.served = next;
    for (const v of removed) {
      this.dropVn(v);
      this.client.unsubscribe([imaTopics.vtepVn(v), imaTopics.bindVn(v)]);
      this.kick(`vn|${v}`);
    }
    if (added.length) await this.subscribe(added.flatMap((v) => [imaTopics.vtepVn(v), imaTopics.bindVn(v)]));
    for (const v of added) this.kick(`vn|${v}`);
  }

  /** Local bindings that changed (after the NVE committed them): announce, withdraw, and fix the data plane. */
  applyLocal(changes: LocalChange[]): void {
    const ops: DpOp[] = [];
    for (const ch of changes) {
      const mac = normMac(ch.mac);
      const k = keyOf(ch.vn, mac);
      const prev = this.local.get(k);
      const next = "gone" in ch ? undefined : { ...ch, mac, ips: ch.ips.map(normIp) };
      if (next) this.local.set(k, next);
      else this.local.delete(k);
      this.refused.delete(k);
      // What the NVE just programmed itself (Txn.finish): mac.local/mac.del when the
      // binding appeared, went, or changed port or state; ip/ip.del for its IPs.
      const macTouched = !prev !== !next || (prev && next && (prev.port !== next.port || prev.active !== next.active));
      if (macTouched) this.dpRemote.delete(k);
      for (const ip of [...(prev?.ips ?? []), ...(next?.ips ?? [])]) if (this.ipProg.get(`${ch.vn}|${ip}`) === k) this.unprog(k, ch.vn, ip);
      this.syncDp(k, ops);
      this.kick(k);
    }
    this.program(ops);
  }

  // ------------------------------------------------------------ what the IMA publishes

  private onMessage = (topic: string, payload: Buffer): void => {
    if (!topic.startsWith(IMA_ROOT) || this.closed) return;
    const t = parseImaTopic(topic);
    if (!t) return;
    let body: any;
    if (payload.length) {
      try {
        body = JSON.parse(payload.toString("utf8"));
      } catch {
        return this.log(`ima client: ${topic}: not JSON, ignored`);
      }
    }
    this.stats.received++;
    if (t.kind === "rsp") {
      if (t.who !== this.nve || !body || typeof body.id !== "string") return;
      const p = this.pending.get(body.id);
      if (!p) return;
      this.pending.delete(body.id);
      this.clock.clearTimer(p.timer);
      if (body.ok) p.resolve(body);
      else p.reject(new ImaRequestError(body.error?.code ?? "internal", body.error?.message ?? "refused", body.error?.field));
    } else if (t.kind === "vn") this.onVn(t.vn, body);
    else if (t.kind === "vtep") this.onVtep(t.vn, t.nve, body);
    else if (t.kind === "bind") this.onBind(t.vn, t.mac, body);
    else if (t.kind === "l3domain") this.onL3Domain(t.id, body);
  };

  /** The routing domains the IMA published (L3 service), by id: their L3 VNI. */
  readonly l3domains = new Map<number, number>();

  /** A routing domain and its L3 VNI (PROTOCOL.md §6 `l3domain/{id}`): programmed with this NVE's router MAC. */
  private onL3Domain(id: number, rec: L3DomainRecord | undefined): void {
    const prev = this.l3domains.get(id);
    const vni = rec && Number.isInteger(rec.vni) ? rec.vni : undefined;
    if (prev === vni) return;
    if (vni === undefined) {
      this.l3domains.delete(id);
      this.program([{ op: "l3domain.del", id }]);
      return;
    }
    this.l3domains.set(id, vni);
    if (!this.o.routerMac) return this.log(`ima client: l3domain ${id}: no router MAC configured, not routed`);
    this.program([{ op: "l3domain", id, vni, routerMac: this.o.routerMac }]);
  }

  private onVn(id: number, rec: VnRecord | undefined): void {
    const prev = this.vns.get(id);
    if (!rec) {
      if (!prev) return;
      this.vns.delete(id);
      if (this.served.has(id)) {
        this.log(`ima client: VN ${id} deleted at the IMA`);
        this.dropVn(id);
        this.joined.delete(id);
        this.o.onVnDeleted?.(id);
      }
      return;
    }
    this.vns.set(id, rec);
    // A served VN that the IMA did not know when we tried to join: join now.
    if (!prev && this.served.has(id) && this.joined.get(id) !== this.ip) this.kick(`vn|${id}`);
    const before = this.o.current?.(id) ?? prev;
    if (!this.served.has(id) || !before) return;
    if (before.vni === rec.vni && stable(before.profile) === stable(rec.profile)) return;
    this.program([{ op: "vn", vn: id, vni: rec.vni, profile: rec.profile }]);
    this.log(`ima client: VN ${id} profile/VNI changed at the IMA (seed §4.5)`);
    this.o.onProfile?.(rec, prev);
  }

  private onVtep(vn: number, nve: string, rec: VtepRecord | undefined): void {
    if (nve === this.nve) {
      // Also for VNs not served (vtep/+/{nve}): a join left over from before a restart is left.
      const was = this.joined.get(vn);
      if (rec) this.joined.set(vn, normIp(rec.ip));
      else this.joined.delete(vn);
      this.kick(`vn|${vn}`);
      if (rec && was !== normIp(rec.ip)) for (const k of this.local.keys()) if (splitKey(k)[0] === vn) this.kick(k);
      return;
    }
    if (!this.served.has(vn)) return;
    let m = this.vteps.get(vn);
    if (!m) this.vteps.set(vn, (m = new Map()));
    const prevIp = m.get(nve);
    const ip = rec ? normIp(rec.ip) : undefined;
    // the router MAC (L3 service) travels with the flood-list entry
    const routerMac = rec?.routerMac ? normMac(rec.routerMac) : undefined;
    const rk = `${vn}|${nve}`;
    if (prevIp === ip && this.routerMacs.get(rk) === routerMac) return;
    if (routerMac) this.routerMacs.set(rk, routerMac); else this.routerMacs.delete(rk);
    const ops: DpOp[] = [];
    if (prevIp !== undefined && prevIp !== ip) ops.push({ op: "flood.leave", vn, nve: prevIp });
    if (ip !== undefined) {
      m.set(nve, ip);
      ops.push({ op: "flood.join", vn, nve: ip, ...(routerMac ? { routerMac } : {}) });
    } else m.delete(nve);
    this.program(ops);
  }

  private onBind(vn: number, mac: string, rec: BindRecord | undefined): void {
    if (!this.served.has(vn)) return;
    const k = keyOf(vn, mac);
    const prev = this.records.get(k);
    if (rec) rec = { ...rec, ip: normIp(rec.ip), ips: rec.ips.map(normIp), ...(rec.next ? { next: { nve: rec.next.nve, ip: normIp(rec.next.ip) } } : {}) };
    if (JSON.stringify(prev) === JSON.stringify(rec)) return;
    if (rec) this.records.set(k, rec);
    else this.records.delete(k);
    const a = this.announced.get(k);
    if (rec && rec.nve === this.nve) {
      this.announced.set(k, { ips: ipsKey(rec.ips), seq: rec.seq });
    } else if (rec && a) {
      // The IMA numbers every move holder's seq + 1 (§6), so another NVE's
      // record with a lower seq is a stale repeat and any other is a move
      // (equal only at the 32-bit ceiling, where the IMA stops counting).
      if (rec.seq >= a.seq) {
        this.announced.delete(k);
        this.log(`ima client: MAC ${mac} in VN ${vn} moved to ${rec.nve} (seq ${a.seq} → ${rec.seq})`);
        // Not announced again until the NVE changes the binding (it should withdraw it).
        if (this.local.has(k)) {
          this.refused.set(k, `moved to ${rec.nve}`);
          this.o.onMoved?.(vn, mac, rec);
        }
      }
    } else if (!rec && prev?.nve === this.nve) {
      this.announced.delete(k); // withdrawn at the IMA (our leave, or a VN change): re-announce if still wanted
    }
    const ops: DpOp[] = [];
    this.syncDp(k, ops);
    this.program(ops);
    this.kick(k);
  }

  // ------------------------------------------------------------ data plane

  /**
   * Brings one (VN, MAC) of the data plane to what it should be: the NVE's own
   * entry where a local binding is active; the published remote binding where
   * there is one held elsewhere; the NVE that pre-associated the MAC (`next`)
   * where this NVE holds it but its binding is inactive (a migration hold:
   * forwarded, not dropped, issue 15); else the NVE's inactive local entry;
   * else nothing.
   */
  private syncDp(k: string, ops: DpOp[]): void {
    const [vn, mac] = splitKey(k);
    const l = this.local.get(k);
    const remote = this.remoteOf(vn, k, l);
    const keepIps = new Set<string>(remote ? remote.ips : []);
    for (const ip of [...(this.progIps.get(k) ?? [])]) {
      if (keepIps.has(ip)) continue;
      this.unprog(k, vn, ip);
      if (l?.ips.includes(ip)) ops.push({ op: "ip", vn, ip, mac }); // the NVE's own IP→MAC again
      else ops.push({ op: "ip.del", vn, ip });
    }
    if (remote) {
      if (this.dpRemote.get(k) !== remote.ip) {
        ops.push({ op: "mac.remote", vn, mac, nve: remote.ip });
        this.dpRemote.set(k, remote.ip);
      }
      for (const ip of remote.ips) {
        const ik = `${vn}|${ip}`;
        if (this.ipProg.get(ik) === k) continue;
        const other = this.ipProg.get(ik);
        if (other !== undefined) this.unprog(other, vn, ip);
        this.ipProg.set(ik, k);
        let set = this.progIps.get(k);
        if (!set) this.progIps.set(k, (set = new Set()));
        set.add(ip);
        ops.push({ op: "ip", vn, ip, mac });
      }
      return;
    }
    if (!this.dpRemote.has(k)) return;
    this.dpRemote.delete(k);
    if (l) {
      // A remote entry had replaced the NVE's inactive local one: put it back.
      ops.push({ op: "mac.local", vn, mac, port: l.port, active: l.active });
      for (const ip of l.ips) ops.push({ op: "ip", vn, ip, mac });
    } else ops.push({ op: "mac.del", vn, mac });
  }

  /**
   * Where the data plane sends (VN, MAC) instead of the NVE's own entry, given
   * the local binding `l` (syncDp's choice): the binding published at another
   * NVE unless `l` is active; `next` (the NVE that pre-associated it) when the
   * NVE holds it with `l` inactive; else undefined (the NVE's own entry, or none).
   */
  private remoteOf(vn: number, k: string, l: { active: boolean } | undefined): { ip: string; ips: string[] } | undefined {
    const r = this.records.get(k);
    if (!r || !this.served.has(vn)) return undefined;
    if (r.nve !== this.nve) return l?.active ? undefined : r;
    // the IP→MAC entries stay the NVE's own; the MAC leads to `next`
    return r.next && r.next.nve !== this.nve && l && !l.active ? { ip: r.next.ip, ips: [] } : undefined;
  }

  /**
   * The data-plane ops of a commit of the NVE (host/control core.ts
   * commitGroup), with the MAC entries this client would re-point right after
   * it (applyLocal → syncDp) already re-pointed, so the data plane never holds
   * the entry in between (issue 15, make before break): an inactive local MAC
   * (a pre-association while the VM still runs elsewhere, RFC 8394
   * "Associated"; or a migration hold whose record names `next`) and a MAC the
   * NVE drops while the IMA publishes it elsewhere become mac.remote toward
   * that NVE. A frame arriving between the two applies was dropped as
   * dst-inactive. applyLocal still programs the same entry afterwards (its
   * bookkeeping and the store's IMA cache follow its own ops). Returns `ops`
   * itself when nothing changes (the common attach allocates nothing).
   */
  overlay(ops: DpOp[]): DpOp[] {
    let out: DpOp[] | undefined;
    for (let i = 0; i < ops.length; i++) {
      const o = ops[i];
      if (!((o.op === "mac.local" && !o.active) || o.op === "mac.del")) continue;
      const mac = normMac(o.mac);
      const remote = this.remoteOf(o.vn, keyOf(o.vn, mac), o.op === "mac.local" ? { active: false } : undefined);
      if (!remote) continue;
      out ??= ops.slice();
      out[i] = { op: "mac.remote", vn: o.vn, mac: o.mac, nve: remote.ip };
    }
    return out ?? ops;
  }

  private unprog(k: string, vn: number, ip: string): void {
    this.ipProg.delete(`${vn}|${ip}`);
    const set = this.progIps.get(k);
    set?.delete(ip);
    if (set && set.size === 0) this.progIps.delete(k);
  }

  /** Forgets a VN no longer served: its flood list and remote bindings leave the data plane. */
  private dropVn(vn: number): void {
    const ops: DpOp[] = [];
    for (const ip of this.vteps.get(vn)?.values() ?? []) ops.push({ op: "flood.leave", vn, nve: ip });
    this.vteps.delete(vn);
    for (const k of [...this.records.keys()]) {
      if (splitKey(k)[0] !== vn) continue;
      this.records.delete(k);
      this.syncDp(k, ops);
    }
    for (const k of [...this.announced.keys()]) if (splitKey(k)[0] === vn) this.announced.delete(k);
    for (const k of [...this.prepared]) if (splitKey(k)[0] === vn) this.prepared.delete(k); // vtep.leave forgets `next` at the IMA
    this.program(ops);
  }

  private program(ops: DpOp[]): void {
    if (ops.length === 0) return;
    this.stats.dpOps += ops.length;
    this.dpChain = this.dpChain.then(() => this.o.programmer.apply(ops)).catch((e) => {
      this.log(`ima client: the data plane refused ${ops.length} ops: ${(e as Error).message}`);
    });
  }

  // ------------------------------------------------------------ workers

  /** Runs the worker of a key (`vn|{id}` or `{vn}|{mac}`); one at a time per key, re-run if kicked meanwhile. */
  private kick(key: string): void {
    if (this.closed || this.retry.has(key)) return;
    if (this.running.has(key)) {
      this.running.set(key, true);
      return;
    }
    this.running.set(key, false);
    void (async () => {
      let again = true;
      while (again && !this.closed) {
        this.running.set(key, false);
        try {
          await (key.startsWith("vn|") ? this.workVn(Number(key.slice(3))) : this.workBind(key));
          this.retry.delete(key);
        } catch (e) {
          if (!(e instanceof ImaRequestError) || !RETRIED.includes(e.code)) throw e;
          const delay = Math.min((this.retry.get(key)?.delay ?? (this.o.retryMs ?? 500) / 2) * 2, 30_000);
          this.log(`ima client: ${key}: ${e.message}; retrying in ${delay} ms`);
          const handle = this.clock.setTimer(() => {
            this.retry.delete(key);
            this.kick(key);
          }, delay);
          this.retry.set(key, { handle, delay });
          break;
        }
        again = this.running.get(key) === true;
      }
      this.running.delete(key);
      if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    })().catch((e) => {
      this.running.delete(key);
      this.log(`ima client: ${key}: ${(e as Error).message}`);
      if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  private async workVn(vn: number): Promise<void> {
    const want = this.served.has(vn);
    const have = this.joined.get(vn);
    if (want && have !== this.ip) {
      try {
        await this.request("vtep.join", { vn: { id: vn }, ip: this.ip, ...(this.o.routerMac ? { routerMac: this.o.routerMac } : {}) });
      } catch (e) {
        if (e instanceof ImaRequestError && e.code === "unknown-vn") return this.log(`ima client: cannot join VN ${vn}: ${e.message}`);
        throw e;
      }
      if (!this.served.has(vn)) return this.kick(`vn|${vn}`);
      this.joined.set(vn, this.ip);
      this.log(`ima client: joined the flood list of VN ${vn}`);
      for (const k of this.local.keys()) if (splitKey(k)[0] === vn) this.kick(k);
    } else if (!want && have !== undefined) {
      try {
        await this.request("vtep.leave", { vn: { id: vn } });
      } catch (e) {
        if (!(e instanceof ImaRequestError && e.code === "unknown-vn")) throw e;
      }
      this.joined.delete(vn);
      this.log(`ima client: left the flood list of VN ${vn}`);
      if (this.served.has(vn)) this.kick(`vn|${vn}`);
    }
  }

  private async workBind(k: string): Promise<void> {
    const [vn, mac] = splitKey(k);
    const l = this.local.get(k);
    const a = this.announced.get(k);
    if (l && this.refused.has(k)) return;
    if (l && (l.active || a) && (!a || a.ips !== ipsKey(l.ips))) {
      if (this.joined.get(vn) !== this.ip) return; // announced once the join is acknowledged (workVn kicks)
      // No seq: the IMA assigns it (PROTOCOL.md §6, RFC 7432 §15 semantics): 0
      // for a new MAC, the holder's + 1 for a move, unchanged for our own update.
      const body: Record<string, unknown> = { vn: { id: vn }, mac, ips: l.ips };
      try {
        const rsp = await this.request("bind.announce", body);
        this.prepared.delete(k); // the move took the place of the pre-association
        if (this.local.get(k) === l) this.announced.set(k, { ips: ipsKey(l.ips), seq: rsp.seq ?? 0 });
        else this.kick(k);
      } catch (err) {
        const e = this.refusal(err, vn);
        if (!e) return;
        this.refused.set(k, e.message);
        this.log(`ima client: announcing ${mac} in VN ${vn} refused: ${e.code}: ${e.message}`);
        if (e.code === "address-conflict" && e.field === "mac") this.o.onDuplicate?.(vn, mac, e.message);
        else if (e.code === "address-conflict" && this.local.has(k)) this.o.onMoved?.(vn, mac, this.records.get(k));
      }
    } else if (l && !l.active && !a && !this.prepared.has(k)) {
      // Pre-associated (RFC 8394 "Associated", never activated here): the IMA
      // names this NVE as the MAC's next holder (bind.prepare, issue 15).
      if (this.joined.get(vn) !== this.ip) return; // once the join is acknowledged (workVn kicks)
      try {
        await this.request("bind.prepare", { vn: { id: vn }, mac });
      } catch (err) {
        const e = this.refusal(err, vn);
        if (!e) return;
        // e.g. an IMA without bind.prepare (unknown-op): the migration still works, with the hold dropping
        this.log(`ima client: preparing ${mac} in VN ${vn} refused: ${e.code}: ${e.message}`);
      }
      if (this.local.get(k) === l) this.prepared.add(k);
      else this.kick(k);
    } else if (!l && !a && this.prepared.has(k)) {
      // The pre-association went without an activation (the migration was called off): the IMA forgets `next`.
      if (this.joined.get(vn) !== undefined)
        await this.request("bind.withdraw", { vn: { id: vn }, mac }).catch((e) => {
          if (retried(e)) throw e;
        });
      // The IMA forgot `next`: a binding back meanwhile (applyLocal kicked this worker again) is prepared anew.
      this.prepared.delete(k);
    } else if (!l && a) {
      if (this.joined.get(vn) === undefined) {
        this.announced.delete(k); // vtep.leave withdrew it at the IMA
        return;
      }
      await this.request("bind.withdraw", { vn: { id: vn }, mac }).catch((e) => {
        if (retried(e)) throw e;
      });
      if (!this.local.has(k)) this.announced.delete(k);
    }
  }

  /**
   * A bind request's error: rethrown when run() retries it (RETRIED) or it is
   * not the IMA's answer; undefined when the VN's join was lost (not-connected:
   * the VN is joined again, which kicks its bindings); else the IMA's final
   * refusal.
   */
  private refusal(e: unknown, vn: number): ImaRequestError | undefined {
    if (!(e instanceof ImaRequestError)) throw e;
    if (e.code === "not-connected") {
      this.joined.delete(vn);
      this.kick(`vn|${vn}`);
      return undefined;
    }
    if (RETRIED.includes(e.code)) throw e;
    return e;
  }

  /** Resolves once no worker runs and every data-plane change is applied (tests, benches, shutdown). */
  async idle(): Promise<void> {
    while (this.running.size) await new Promise<void>((r) => this.idleWaiters.push(r));
    await this.dpChain;
  }

  /** What the client holds, for `nvedge show` and tests. */
  view(): { served: number[]; joined: number[]; announced: { vn: number; mac: string; seq: number }[]; remote: { vn: number; mac: string; nve: string }[] } {
    return {
      served: [...this.served].sort((a, b) => a - b),
      joined: [...this.joined.keys()].sort((a, b) => a - b),
      announced: [...this.announced].map(([k, a]) => ({ vn: splitKey(k)[0], mac: splitKey(k)[1], seq: a.seq })),
      remote: [...this.dpRemote].map(([k, ip]) => ({ vn: splitKey(k)[0], mac: splitKey(k)[1], nve: ip })),
    };
  }

  async stop(): Promise<void> {
    this.closed = true;
    for (const r of this.retry.values()) this.clock.clearTimer(r.handle);
    this.retry.clear();
    for (const [id, p] of this.pending) {
      this.clock.clearTimer(p.timer);
      p.reject(new ImaRequestError("internal", "the IMA client stopped"));
      this.pending.delete(id);
    }
    this.client.off("message", this.onMessage);
    this.client.off("connect", this.onReconnect);
    await this.dpChain;
    if (this.own) await this.client.endAsync();
  }
}
