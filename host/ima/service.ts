// The IMA over MQTT (PROTOCOL.md §6): reads requests on nvo3/v1/ima/req/+,
// answers on nvo3/v1/ima/rsp/{who}, and keeps the retained tree
// nvo3/v1/ima/{vn,vtep,bind}/… equal to its state. All state logic is in
// core.ts. Nothing here assumes one broker process: the IMA only publishes,
// subscribes and relies on retained messages and QoS 1, which a cluster of
// brokers provides as well.
//
// The MQTT session is persistent (clean: false, a fixed client id): requests
// sent while the IMA restarts wait at the broker and are answered when it is
// back. When the broker comes back without our session (it restarted and may
// have lost its retained messages) the whole tree is published again.
import type { MqttClient } from "mqtt";
import { encode, publishOptions } from "../protocol/codec.js";
import { imaMqttOptions, imaTopics, parseImaTopic } from "../protocol/ima.js";
import { connectWhenReachable, type BrokerConnection } from "../protocol/mqtt.js";
import { realClock, type Clock } from "../domain/clock.js";
import { ROOT } from "../protocol/topics.js";
import { rateLimitedLog } from "../protocol/rate-log.js";
import { ImaCore, DEFAULT_IMA_SETTINGS, type BatchResult, type ImaSettings, type Publish, type VnSeed } from "./core.js";
import { openImaDb, type ImaDb } from "./db.js";

export interface ImaServiceOptions {
  settings?: Partial<ImaSettings>;
  broker: BrokerConnection;
  /** a directory (LMDB) or an open ImaDb */
  store: string | ImaDb;
  /** seeded into the catalog when the store is new (the configuration's `vns`) */
  seed?: VnSeed[];
  /** routing domains seeded before `seed` (the configuration's `l3domains`) */
  seedL3?: { id: number; vni: number }[];
  now?: () => number;
  log?: (line: string) => void;
  /** most requests handled in one store transaction */
  maxBatch?: number;
  /**
   * Most requests of one requester waiting to be served (default 10000);
   * beyond, a request is answered `rate-limited` at once and not queued, so a
   * flooding NVE cannot grow the IMA's memory (issue 10).
   */
  maxPendingPerRequester?: number;
  /**
   * How long an NVE may stay offline (its retained status says so, PROTOCOL.md
   * §3) before its flood-list entries and bindings are withdrawn; 0 = never.
   */
  nveHoldMs?: number;
  clock?: Clock;
  /**
   * High availability (host/ima/ha.ts): the work session, already connected
   * (client id the identity, persistent) by the instance that won the lease;
   * never reconnected here: a lost session means another instance took it over.
   */
  client?: MqttClient;
  /**
   * High availability: every stored change is also published, retained, under
   * nvo3/v1/ima/ha/state/ (haStateTopic) before the public tree and before any
   * answer, so a standby's copy holds everything answered (tombstones and
   * move history included: no sequence number is reused after a failover).
   * `seen` is that tree as the broker holds it now: the start publishes what differs.
   */
  replicate?: { seen: ReadonlyMap<string, string> };
}

/** The HA replication topic of one stored record (host/ima/ha.ts): `nvo3/v1/ima/ha/state/{collection}/{key}`. */
export function haStateTopic(c: string, key: string): string {
  return `${ROOT}ima/ha/state/${c}/${encodeURIComponent(key)}`;
}

export interface ImaStats {
  batches: number; requests: number; published: number;
  /** MAC moves (RFC 7432 §15) stored since start: monotonic (nvedge_ima_moves_total) */
  moves: number;
}

interface Pending { who: string; payload: Buffer; corr?: Buffer }
const NVE_STATUS = /^nvo3\/v1\/nve\/([A-Za-z0-9._-]{1,64})\/status$/;

/** HA: what of the replication tree differs from the store (a start publishes it, records first). */
function haDiff(db: ImaDb, seen: ReadonlyMap<string, string>): Publish[] {
  const out: Publish[] = [];
  const mine = new Set<string>();
  for (const c of ["vns", "vteps", "binds", "l3domains"] as const) {
    for (const [k, v] of db.list(c)) {
      const topic = haStateTopic(c, k);
      const payload = JSON.stringify(v);
      mine.add(topic);
      if (seen.get(topic) !== payload) out.push({ topic, payload });
    }
  }
  for (const [topic, payload] of seen) if (payload !== "" && !mine.has(topic)) out.push({ topic, payload: "" });
  return out;
}

export class ImaService {
  readonly stats: ImaStats = { batches: 0, requests: 0, published: 0, moves: 0 };
  private queue: Pending[] = [];
  private pendingOf = new Map<string, number>();
  maxPendingPerRequester = 10_000;
  private readonly busyLog: (key: string, line: string) => void;
  private pumping: Promise<void> | undefined;
  private ready = false;
  private closed = false;
  private purges: { nve: string; why?: string }[] = [];
  /** HA mode (ha.ts): stored changes are replicated under nvo3/v1/ima/ha/state/ */
  private replicate = false;
  private offline = new Map<string, unknown>();
  nveHoldMs = 0;
  clock: Clock = realClock;

  private constructor(readonly core: ImaCore, private readonly db: ImaDb, private readonly ownDb: boolean, readonly client: MqttClient,
    private readonly pv: number, private readonly log: (l: string) => void, private readonly maxBatch: number) {
    this.busyLog = rateLimitedLog(log);
  }

  static async start(o: ImaServiceOptions): Promise<ImaService> {
    const log = o.log ?? (() => {});
    const settings: ImaSettings = { ...DEFAULT_IMA_SETTINGS, ...o.settings };
    const db = typeof o.store === "string" ? openImaDb(o.store) : o.store;
    const ownDb = typeof o.store === "string";
    try {
      const core = new ImaCore(settings, o.now ?? Date.now, log);
      core.load(db);
      if (db.isNew) {
        // A seed that fails leaves the store new, so a corrected file seeds it next time.
        if (o.seedL3?.length) {
          const r = core.seedL3(o.seedL3);
          await db.write(r.writes);
          log(`ima: new store, ${o.seedL3.length} l3domains seeded from the configuration`);
        }
        if (o.seed?.length) {
          const r = core.seed(o.seed);
          await db.write(r.writes);
          log(`ima: new store, ${o.seed.length} VNs seeded from the configuration`);
        }
        await db.markSeeded();
      }
      if (settings.nves.length === 0) log("ima: warning: the configuration lists no NVEs (nves: [{id, ip}]); every NVE request will be refused (PROTOCOL.md §6)");
      // §6: NVEs no longer listed, or listed with another IP, leave their flood
      // lists and their bindings are withdrawn before anything is served.
      for (const nve of core.strayNves()) {
        const r = core.purgeNve(nve, "is not listed in nves with the IP its entries carry");
        await db.write(r.writes);
      }
      const pv = o.broker.protocolVersion ?? 4;
      // a broker not up yet is waited for (connectWhenReachable), not a failed start
      const client = o.client ?? await connectWhenReachable(o.broker.url, (l) => log(`ima: ${l}`), imaMqttOptions({ username: settings.ima, ...o.broker }, settings.ima, false));
      const svc = new ImaService(core, db, ownDb, client, pv, log, o.maxBatch ?? 512);
      svc.replicate = o.replicate !== undefined;
      svc.nveHoldMs = o.nveHoldMs ?? 0;
      svc.maxPendingPerRequester = o.maxPendingPerRequester ?? 10_000;
      svc.clock = o.clock ?? realClock;
      client.on("message", (topic, payload, packet) => svc.onMessage(topic, payload, packet.properties?.correlationData));
      client.on("error", (e) => log(`ima: mqtt: ${e.message}`));
      client.on("offline", () => log("ima: mqtt: broker connection lost, reconnecting"));
      client.on("connect", (connack) => {
        if (svc.replicate) return; // HA: never reconnected (reconnectPeriod 0), see ha.ts
        if (connack.sessionPresent) return log("ima: mqtt: reconnected");
        // The broker lost our session, so it may have lost the retained tree too.
        log("ima: mqtt: reconnected without our session: publishing the whole tree again");
        void svc.resubscribe().then(() => svc.enqueuePublish(core.allPublishes()));
      });
      await svc.resubscribe();
      // The client id is the identity itself (the brokers allow an identity only
      // its own name or `{identity}-…`, host/broker/acl.ts): one persistent session.
      // A restart publishes only what differs from what the broker acknowledged (issue 6).
      const pending = core.pendingPublishes();
      await svc.publish(pending, o.replicate ? haDiff(db, o.replicate.seen) : []);
      log(`ima: ${settings.ima} serving PROTOCOL.md §6 at ${o.broker.url}: ${core.vns.size} VNs, ${core.vteps.size} flood-list entries, ${core.binds.size} bindings; ${pending.length} retained messages published at start`);
      svc.ready = true;
      svc.kick();
      return svc;
    } catch (e) {
      if (ownDb) await db.close().catch(() => {});
      throw e;
    }
  }

  /**
   * A reload of the configuration (issue 13, `nvedge ima run` on SIGHUP): the
   * operators, the NVE list and duplicate detection take effect for the next
   * batch; an NVE no longer listed, or listed with another IP, leaves its
   * flood lists and its bindings are withdrawn, as at start. The purges run
   * through the pump, after the batch in progress and before the next one.
   * Returns those NVEs.
   */
  reconfigure(s: Parameters<ImaCore["reconfigure"]>[0]): string[] {
    const stray = this.core.reconfigure(s);
    for (const nve of stray) if (!this.purges.some((p) => p.nve === nve)) this.purges.push({ nve, why: "is no longer listed in nves with the IP its entries carry (reload)" });
    this.kick();
    return stray;
  }

  private async resubscribe(): Promise<void> {
    const filters = [imaTopics.reqAll, ...(this.nveHoldMs > 0 ? [`${ROOT}nve/+/status`] : [])];
    const granted = await this.client.subscribeAsync(filters, { qos: 1 });
    for (const g of granted) if (g.qos === 128) throw new Error(`the broker refused the subscription ${g.topic} for the IMA (check its ACL: is this identity listed in imas?)`);
  }

  private onMessage(topic: string, payload: Buffer, corr?: Buffer): void {
    const st = NVE_STATUS.exec(topic);
    if (st) return this.onNveStatus(st[1], payload);
    const t = parseImaTopic(topic);
    if (!t || t.kind !== "req" || this.closed) return;
    const n = this.pendingOf.get(t.who) ?? 0;
    if (n >= this.maxPendingPerRequester) return this.answerBusy(t.who, payload, corr);
    this.pendingOf.set(t.who, n + 1);
    this.queue.push({ who: t.who, payload, corr });
    this.kick();
  }

  /** `rate-limited` (PROTOCOL.md §2) for a request beyond its requester's share of the queue; nothing is stored. */
  private answerBusy(who: string, payload: Buffer, corr?: Buffer): void {
    let id: string | null = null;
    if (payload.length <= this.core.settings.maxPayload) {
      try {
        const m = JSON.parse(payload.toString("utf8")) as { id?: unknown };
        if (typeof m?.id === "string" && m.id.length >= 1 && m.id.length <= 64) id = m.id;
      } catch { /* no usable id: answered with id null (§2) */ }
    }
    this.busyLog(who, `ima: ${who} has ${this.maxPendingPerRequester} requests waiting; more are answered rate-limited`);
    const rsp = { id, ok: false, error: { code: "rate-limited", message: `${this.maxPendingPerRequester} requests of ${who} are already waiting at the IMA; retry later` } };
    this.client.publish(imaTopics.rsp(who), encode(rsp), publishOptions(this.pv, false, corr), () => {});
  }

  /**
   * An NVE's retained status: offline starts its hold, online cancels it. The
   * hold is an in-process timer (clock.setTimer: setTimeout, on libuv's
   * monotonic clock), so a wall-clock step neither shortens nor extends it
   * (issue 10); only the duplicate-move times, which are stored, are wall-clock.
   */
  private onNveStatus(nve: string, payload: Buffer): void {
    if (this.closed || this.nveHoldMs <= 0) return;
    let state: unknown;
    try {
      state = payload.length ? (JSON.parse(payload.toString("utf8")) as { state?: unknown }).state : undefined;
    } catch {
      return;
    }
    const t = this.offline.get(nve);
    if (state === "online") {
      if (t !== undefined) this.clock.clearTimer(t);
      this.offline.delete(nve);
    } else if (state === "offline" && t === undefined) {
      this.log(`ima: ${nve} is offline; its bindings stay for ${this.nveHoldMs} ms`);
      this.offline.set(nve, this.clock.setTimer(() => {
        this.offline.delete(nve);
        this.purges.push({ nve });
        this.kick();
      }, this.nveHoldMs));
    }
  }

  private kick(): void {
    if (!this.ready || this.pumping || this.closed) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (this.queue.length || this.purges.length || this.republish.length) this.kick();
    });
  }

  private republish: Publish[] = [];
  private enqueuePublish(ps: Publish[]): void {
    this.republish.push(...ps);
    this.kick();
  }

  private async pump(): Promise<void> {
    while (!this.closed && (this.queue.length || this.republish.length || this.purges.length)) {
      if (this.purges.length) {
        const { nve, why } = this.purges.shift()!;
        const r = this.core.purgeNve(nve, why);
        try {
          await this.db.write(r.writes);
        } catch (e) {
          r.undo();
          this.log(`ima: purging ${nve}: ${(e as Error).message}`);
          continue;
        }
        await this.publish(r.publishes, this.haOf(r.writes)).catch((e) => this.log(`ima: publish: ${(e as Error).message}`));
        continue;
      }
      if (this.republish.length) {
        const ps = this.republish.splice(0);
        await this.publish(ps).catch((e) => this.log(`ima: republish: ${(e as Error).message}`));
        continue;
      }
      const batch = this.queue.splice(0, this.maxBatch);
      await this.runBatch(batch);
    }
  }

  /** One batch: state → store (durable) → retained publishes (acknowledged) → responses (§2). */
  private async runBatch(batch: Pending[]): Promise<void> {
    this.stats.batches++;
    this.stats.requests += batch.length;
    const r = this.core.run(batch);
    let responses = r.responses.map((x) => x.rsp);
    let ha = this.haOf(r.writes);
    try {
      await this.db.write(r.writes);
      this.stats.moves += r.moves;
    } catch (e) {
      ha = [];
      r.undo();
      this.log(`ima: store write failed, ${batch.length} requests refused: ${(e as Error).message}`);
      responses = responses.map((rsp) => (rsp.ok ? { id: rsp.id, ok: false, error: { code: "internal", message: `the IMA could not store the change: ${(e as Error).message}` } } : rsp));
      r.publishes.length = 0;
    }
    let published = true;
    await this.publish(r.publishes, ha).catch((e) => {
      published = false;
      this.log(`ima: publish: ${(e as Error).message}`);
    });
    for (const p of batch) {
      const left = (this.pendingOf.get(p.who) ?? 1) - 1;
      if (left > 0) this.pendingOf.set(p.who, left);
      else this.pendingOf.delete(p.who);
    }
    // HA: an answer promises that a standby holds the change; one the broker
    // did not take is not answered (the session is lost: the NVE's client
    // retries with the instance that takes over, and every op is idempotent).
    if (this.replicate && !published) return;
    batch.forEach((p, i) => {
      this.client.publish(imaTopics.rsp(p.who), encode(responses[i]), publishOptions(this.pv, false, p.corr), (e) => {
        if (e && !this.closed) this.log(`ima: response to ${p.who}: ${e.message}`);
      });
    });
  }

  /**
   * Publishes retained messages and waits for every PUBACK, then records them
   * as published. The record is only read by the next start, so it is written
   * in the background (in order; stop() waits for it): if it is lost, that start
   * publishes the same payloads again, which changes nothing for subscribers.
   */
  private async publish(ps: Publish[], ha: Publish[] = []): Promise<void> {
    if (ps.length === 0 && ha.length === 0) return;
    // HA records first: one connection delivers in order (MQTT-4.6.0-2), so a
    // public record never reaches the broker without its replication record.
    await Promise.all([...ha, ...ps].map((p) => this.client.publishAsync(p.topic, p.payload, publishOptions(this.pv, true))));
    if (ps.length === 0) return;
    this.stats.published += ps.length;
    const writes = this.core.published_(ps);
    this.pubLog = this.pubLog.then(() => this.db.write(writes)).catch((e) => this.log(`ima: recording published messages: ${(e as Error).message}`));
  }

  private pubLog: Promise<void> = Promise.resolve();

  /** HA: the replication records of a batch's store writes (none without HA, and none of `pub`). */
  private haOf(writes: BatchResult["writes"]): Publish[] {
    if (!this.replicate) return [];
    const out: Publish[] = [];
    for (const w of writes) if (w.c !== "pub") out.push({ topic: haStateTopic(w.c, w.key), payload: w.value === null || w.value === undefined ? "" : JSON.stringify(w.value) });
    return out;
  }

  /**
   * HA: lets the work session go without closing the store (another instance
   * took the session over, or the broker went away): nothing more is stored,
   * published or answered. Bounded: a publish the lost connection never
   * acknowledges is not waited for beyond `waitMs`.
   */
  async detach(waitMs = 2000): Promise<void> {
    this.closed = true;
    this.ready = false;
    for (const t of this.offline.values()) this.clock.clearTimer(t);
    (this.client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
    await this.client.endAsync(true).catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([this.pumping?.catch(() => {}), this.pubLog]), new Promise((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  /** Waits for the batch in progress, then disconnects and closes the store. */
  async stop(): Promise<void> {
    this.ready = false;
    await this.pumping;
    this.closed = true;
    for (const t of this.offline.values()) this.clock.clearTimer(t);
    await this.client.endAsync();
    await this.pubLog;
    if (this.ownDb) await this.db.close();
  }

  /** For tests: drop the connection as a crash would (no DISCONNECT), keep the session at the broker. */
  async kill(): Promise<void> {
    this.closed = true;
    for (const t of this.offline.values()) this.clock.clearTimer(t);
    this.ready = false;
    (this.client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
    await this.client.endAsync(true);
    await this.pumping?.catch(() => {});
    await this.pubLog;
    if (this.ownDb) await this.db.close();
  }
}
