// IMA high availability (issue 15): two or more `nvedge ima run` instances
// with the same identity, one active and the rest standing by, elected through
// the broker. Each instance keeps its own LMDB store, brought up to date from
// the retained tree.
//
// Topics (all under nvo3/v1/ima/ha/, written and read by the IMA identity
// only, host/broker/acl.ts):
//   member/{instance}  retained {"state":"online","priority":p}; the instance's
//                      will (its own connection, client id `{ima}-ha-{instance}`)
//                      makes it {"state":"offline"} when the process dies
//   lease              retained {"holder":instance,"epoch":n}: who is active
//   state/{c}/{key}    retained, every stored record of the active (ImaService
//                      `replicate`): the catalog, flood lists and bindings with
//                      their tombstones and move history, so a standby assigns
//                      no sequence number twice (RFC 7432 §15)
//   barrier/{instance} not retained: an instance's own marker (see below)
//
// Why it is safe with plain MQTT 3.1.1 (no compare-and-set):
// - Fencing by the session: the active serves on the persistent session whose
//   client id is the identity itself (as a single IMA does). The broker lets
//   one connection hold a client id and drops the older one when another
//   connects with it [MQTT-3.1.4-2], so at any time at most one instance can
//   receive requests or publish the tree; one that loses the session stops
//   serving at once (ImaService.detach) and never reconnects it by itself.
//   Requests sent while no instance holds it wait in that session (QoS 1).
// - Nothing answered is lost: the active answers only after the change is
//   stored and its state/ record and public record are acknowledged by the
//   broker (PROTOCOL.md §2), records before public ones on one connection.
//   An instance that takes the session first fences the old one, then sends a
//   barrier through its own watch connection and waits for it to come back:
//   everything the broker took from the old active before the fence was queued
//   to this watch subscription before the barrier, so its copy then holds
//   every answered change (MQTT-4.6.0: one subscription's messages arrive in
//   the order the broker took them). Then it loads its store and serves.
// - The election only decides who tries: when the lease's holder is offline
//   (its will), the online member with the highest priority (then the lowest
//   name) takes over after `settleMs`; the others wait `holdMs / 2` before
//   trying too, so a candidate that dies on the way is replaced. Two that try
//   at once are harmless: the session admits one, the other steps down.
// - A standby's store follows the tree, which is the truth once a lease has
//   existed: a change the old active stored but never published (so never
//   answered) is dropped; its requester retries (every op is idempotent).
//   Before any lease (a single IMA's store becoming the first active) the
//   store is kept, and the first active publishes its state/ records.
import type { MqttClient } from "mqtt";
import { randomUUID } from "node:crypto";
import { connectWhenReachable, mqttClientOptions } from "../protocol/mqtt.js";
import { ROOT } from "../protocol/topics.js";
import { openImaDb, type ImaCollection, type ImaDb } from "./db.js";
import { ImaService, type ImaServiceOptions } from "./service.js";
import { imaMqttOptions } from "../protocol/ima.js";

export interface ImaHaSettings {
  /** this instance's name, unique among the IMA's instances (`^[A-Za-z0-9._-]{1,64}$`) */
  instance: string;
  /** preferred as the active one: higher first (default 0) */
  priority?: number;
  /** a standby takes over within this time of the active's loss (default 10000) */
  holdMs?: number;
  /** how long the best candidate waits for other members' news before taking over (default 100) */
  settleMs?: number;
}

export interface ImaHaOptions extends Omit<ImaServiceOptions, "store" | "client" | "replicate"> {
  /** this instance's own LMDB directory */
  store: string;
  ha: ImaHaSettings;
}

export type HaRole = "syncing" | "standby" | "taking-over" | "active" | "stopped";

const HA = `${ROOT}ima/ha/`;
export const haTopics = {
  member: (instance: string) => `${HA}member/${instance}`,
  members: `${HA}member/+`,
  lease: `${HA}lease`,
  state: `${HA}state/#`,
  barrier: (instance: string) => `${HA}barrier/${instance}`,
};
/** The public retained tree (PROTOCOL.md §6) a standby mirrors as the `pub` record of what the broker holds. */
const PUBLIC = [`${ROOT}ima/vn/+`, `${ROOT}ima/vtep/+/+`, `${ROOT}ima/bind/+/+`];
const COLLECTIONS = new Set(["vns", "vteps", "binds", "l3domains"]);

interface Lease { holder: string; epoch: number }
interface Member { state: string; priority: number }

export class ImaHaNode {
  role: HaRole = "syncing";
  /** the service while active */
  service: ImaService | undefined;
  readonly instance: string;
  private readonly holdMs: number;
  private readonly settleMs: number;
  private readonly priority: number;
  private readonly log: (l: string) => void;
  private members = new Map<string, Member>();
  private lease: Lease | undefined;
  /** nvo3/v1/ima/ha/state/… as received: topic → payload */
  private readonly state = new Map<string, string>();
  /** the public tree as received: topic → payload */
  private readonly pub = new Map<string, string>();
  private barriers = new Map<string, () => void>();
  private writes = new Map<string, { c: ImaCollection; key: string; value: unknown }>();
  private writing: Promise<void> = Promise.resolve();
  private synced = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** role changes, for tests and logs */
  readonly roles: { role: HaRole; at: number }[] = [];
  onRole?: (role: HaRole) => void;

  private constructor(private readonly o: ImaHaOptions, private readonly db: ImaDb, private readonly watch: MqttClient) {
    this.instance = o.ha.instance;
    this.holdMs = o.ha.holdMs ?? 10_000;
    this.settleMs = o.ha.settleMs ?? 100;
    this.priority = o.ha.priority ?? 0;
    this.log = o.log ?? (() => {});
  }

  static async start(o: ImaHaOptions): Promise<ImaHaNode> {
    const ima = o.settings?.ima ?? "ima";
    const db = openImaDb(o.store);
    const log = o.log ?? (() => {});
    // The keepalive bounds how long a hung (not crashed) active keeps its member record online: 1.5 × keepalive < holdMs.
    const holdMs = o.ha.holdMs ?? 10_000;
    const opts = mqttClientOptions({ username: ima, ...o.broker }, `${ima}-ha-${o.ha.instance}`, { clean: true, will: { topic: haTopics.member(o.ha.instance), payload: JSON.stringify({ state: "offline" }) } });
    opts.keepalive = Math.max(1, Math.floor(holdMs / 3000));
    let watch: MqttClient;
    try {
      watch = await connectWhenReachable(o.broker.url, (l) => log(`ima ha: ${l}`), opts);
    } catch (e) {
      await db.close().catch(() => {});
      throw e;
    }
    const node = new ImaHaNode(o, db, watch);
    watch.on("message", (t, p) => node.onMessage(t, p));
    watch.on("connect", () => {
      // After a reconnect (clean session): subscribe again, say we are here, and sync before standing by.
      if (node.closed || node.role === "syncing") return;
      void node.join().catch((e) => log(`ima ha: rejoining: ${(e as Error).message}`));
    });
    try {
      await node.join();
    } catch (e) {
      await watch.endAsync(true).catch(() => {});
      await db.close().catch(() => {});
      throw e;
    }
    return node;
  }

  private setRole(r: HaRole): void {
    if (this.role === r) return;
    this.role = r;
    this.roles.push({ role: r, at: Date.now() });
    this.log(`ima ha: ${this.instance} is ${r}`);
    this.onRole?.(r);
  }

  /** Subscribes, announces this member, syncs the store from the tree, then stands by. */
  private async join(): Promise<void> {
    const serving = this.role === "active" || this.role === "taking-over";
    // A clean session delivers every retained message again: what the broker
    // holds now replaces what was heard before (a broker that restarted empty
    // has no lease, and then the store is kept, not wiped to an empty tree).
    this.lease = undefined;
    this.members.clear();
    this.state.clear();
    this.pub.clear();
    const granted = await this.watch.subscribeAsync([haTopics.members, haTopics.lease, haTopics.state, haTopics.barrier(this.instance), ...PUBLIC], { qos: 1 });
    for (const g of granted) if (g.qos === 128) throw new Error(`the broker refused the subscription ${g.topic} for the IMA (its ACL must give the IMA identity nvo3/v1/ima/ha/# and the public tree)`);
    await this.watch.publishAsync(haTopics.member(this.instance), JSON.stringify({ state: "online", priority: this.priority }), { qos: 1, retain: true });
    // The active one's store is the one it writes: only a standby syncs from the tree.
    if (serving) return;
    this.setRole("syncing");
    this.synced = false;
    await this.barrier();
    await this.snapshot();
    this.synced = true;
    if (this.role === "syncing") this.setRole("standby");
    this.evaluate();
  }

  /** Resolves once everything the broker queued to the watch subscription before now has arrived. */
  private async barrier(): Promise<void> {
    const id = randomUUID();
    const got = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { this.barriers.delete(id); reject(new Error("the broker did not return the HA barrier within 10 s")); }, 10_000);
      this.barriers.set(id, () => { clearTimeout(t); resolve(); });
    });
    await this.watch.publishAsync(haTopics.barrier(this.instance), id, { qos: 1 });
    await got;
  }

  /**
   * The store made equal to the tree (once a lease exists, the tree is the
   * truth): records the tree lacks go, the others take the tree's value; the
   * `pub` record becomes the public tree as the broker holds it.
   */
  private async snapshot(): Promise<void> {
    await this.flush();
    const changes: { c: ImaCollection; key: string; value: unknown }[] = [];
    if (this.lease) {
      const tree = new Map<string, unknown>();
      for (const [topic, payload] of this.state) {
        const r = parseState(topic);
        if (r && payload) tree.set(`${r.c}|${r.key}`, JSON.parse(payload));
      }
      for (const c of ["vns", "vteps", "binds"] as const) {
        for (const [key, v] of this.db.list(c)) {
          const want = tree.get(`${c}|${key}`);
          if (want === undefined) changes.push({ c, key, value: null });
          else if (JSON.stringify(v) !== JSON.stringify(want)) changes.push({ c, key, value: want });
          tree.delete(`${c}|${key}`);
        }
      }
      for (const [ck, value] of tree) {
        const i = ck.indexOf("|");
        changes.push({ c: ck.slice(0, i) as ImaCollection, key: ck.slice(i + 1), value });
      }
      // The catalog came from the active instance, which seeded it: this store is not seeded again.
      if (this.db.isNew) await this.db.markSeeded();
    }
    const pubNow = new Map(this.db.list("pub"));
    for (const [topic, payload] of this.pub) if (pubNow.get(topic) !== payload) changes.push({ c: "pub", key: topic, value: payload });
    for (const topic of pubNow.keys()) if (!this.pub.has(topic)) changes.push({ c: "pub", key: topic, value: null });
    if (changes.length) {
      await this.db.write(changes);
      this.log(`ima ha: ${this.instance} synced its store from the retained tree (${changes.length} records changed)`);
    }
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (this.closed) return;
    const text = payload.toString("utf8");
    if (topic === haTopics.barrier(this.instance)) return this.barriers.get(text)?.();
    if (topic === haTopics.lease) {
      let l: Lease | undefined;
      try {
        const v = text ? JSON.parse(text) as Partial<Lease> : undefined;
        if (v && typeof v.holder === "string" && typeof v.epoch === "number") l = { holder: v.holder, epoch: v.epoch };
      } catch { /* not a lease: none */ }
      this.lease = l;
      // Another instance holds the lease with a later epoch: it fenced us (its session took ours).
      if (this.role === "active" && l && l.holder !== this.instance) void this.stepDown(`${l.holder} holds the lease (epoch ${l.epoch})`);
      return this.evaluate();
    }
    if (topic.startsWith(`${HA}member/`)) {
      const name = topic.slice(`${HA}member/`.length);
      let m: Member | undefined;
      try {
        const v = text ? JSON.parse(text) as Partial<Member> : undefined;
        if (v && typeof v.state === "string") m = { state: v.state, priority: typeof v.priority === "number" ? v.priority : 0 };
      } catch { /* not a member record: gone */ }
      if (m) this.members.set(name, m);
      else this.members.delete(name);
      return this.evaluate();
    }
    if (topic.startsWith(`${HA}state/`)) {
      if (text) this.state.set(topic, text);
      else this.state.delete(topic);
      // While standing by, the store follows at once (the active's own store is the one it wrote).
      const r = parseState(topic);
      if (r && this.synced && this.role === "standby") this.queue(r.c, r.key, text ? JSON.parse(text) : null);
      return;
    }
    if (topic.startsWith(`${ROOT}ima/`)) {
      if (text) this.pub.set(topic, text);
      else this.pub.delete(topic);
      if (this.synced && this.role === "standby") this.queue("pub", topic, text || null);
    }
  }

  private queue(c: ImaCollection, key: string, value: unknown): void {
    this.writes.set(`${c}|${key}`, { c, key, value });
    if (this.writes.size === 1) this.writing = this.writing.then(() => this.flushNow());
  }

  private async flushNow(): Promise<void> {
    const w = [...this.writes.values()];
    this.writes.clear();
    if (w.length) await this.db.write(w).catch((e) => this.log(`ima ha: store write: ${(e as Error).message}`));
  }

  private async flush(): Promise<void> {
    await this.writing;
    await this.flushNow();
  }

  /** Decides whether this standby should take over now, later, or not. */
  private evaluate(): void {
    if (this.closed || this.role !== "standby" || !this.synced) return;
    const online = (i: string) => this.members.get(i)?.state === "online";
    const l = this.lease;
    if (l && l.holder !== this.instance && online(l.holder)) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    if (this.timer) return;
    // The lease is free: none yet, its holder offline (its will), or this instance's own from before a restart.
    const ranked = [...this.members].filter(([, m]) => m.state === "online")
      .sort(([a, x], [b, y]) => y.priority - x.priority || (a < b ? -1 : a > b ? 1 : 0)).map(([n]) => n);
    const delay = ranked[0] === this.instance ? this.settleMs : Math.max(this.settleMs, Math.floor(this.holdMs / 2));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = this.lease;
      if (this.role !== "standby" || (now && now.holder !== this.instance && online(now.holder))) return;
      void this.takeOver().catch((e) => {
        this.log(`ima ha: ${this.instance} could not take over: ${(e as Error).message}`);
        void this.stepDown("take-over failed");
      });
    }, delay);
  }

  private async takeOver(): Promise<void> {
    this.setRole("taking-over");
    const o = this.o;
    const ima = o.settings?.ima ?? "ima";
    // 1. The session: connecting with the identity's client id fences any other holder [MQTT-3.1.4-2].
    const work = await connectWhenReachable(o.broker.url, (l) => this.log(`ima ha: ${l}`), imaMqttOptions({ username: ima, ...o.broker, reconnectPeriodMs: 0 }, ima, false));
    let svc: ImaService;
    const epoch = (this.lease?.epoch ?? 0) + 1;
    try {
      if (this.closed) throw new Error("stopped");
      // 2. Everything the old active got acknowledged is now in this copy.
      await this.barrier();
      await this.snapshot();
      // 3. Serve from this store; publish what the tree lacks (state/ records first).
      svc = await ImaService.start({ ...o, store: this.db, client: work, replicate: { seen: this.state } });
    } catch (e) {
      await work.endAsync(true).catch(() => {});
      throw e;
    }
    if (this.closed || this.role !== "taking-over") { await svc.detach(); return; }
    this.service = svc;
    work.on("close", () => { if (this.service === svc) void this.stepDown("the session was lost (taken over, or the broker went away)"); });
    await work.publishAsync(haTopics.lease, JSON.stringify({ holder: this.instance, epoch }), { qos: 1, retain: true });
    this.setRole("active");
    this.log(`ima ha: ${this.instance} is the active IMA (lease epoch ${epoch})`);
  }

  /** Stops serving (the store stays open), then syncs from the tree and stands by again. */
  private async stepDown(why: string): Promise<void> {
    if (this.closed || this.role === "syncing" || this.role === "standby") return;
    this.log(`ima ha: ${this.instance} steps down: ${why}`);
    const svc = this.service;
    this.service = undefined;
    this.setRole("syncing");
    await svc?.detach();
    if (this.closed) return;
    await this.join().catch((e) => this.log(`ima ha: rejoining: ${(e as Error).message}`));
  }

  /**
   * A reload (SIGHUP, host/cli/ima.ts imaReload): the settings it may change,
   * for the active service now and for every later take-over (a standby
   * starts its service with them). The state of an NVE no longer served is
   * withdrawn by the active only: a standby's store follows the tree.
   * Returns those NVEs, as ImaService.reconfigure.
   */
  reconfigure(s: Parameters<ImaService["reconfigure"]>[0]): string[] {
    this.o.settings = { ...this.o.settings, ...s };
    return this.service?.reconfigure(s) ?? [];
  }

  /** The connections a reload's TLS files go to (the watch one, and the active's); a take-over's connection reads them anew. */
  tlsClients(): MqttClient[] {
    return this.service ? [this.watch, this.service.client] : [this.watch];
  }

  /** A clean stop: an active instance hands the lease over (its member record goes offline). */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const svc = this.service;
    this.service = undefined;
    this.setRole("stopped");
    if (svc) await svc.detach();
    await this.watch.publishAsync(haTopics.member(this.instance), JSON.stringify({ state: "offline" }), { qos: 1, retain: true }).catch(() => {});
    await this.watch.endAsync().catch(() => {});
    await this.flush().catch(() => {});
    await this.db.close();
  }
}

function parseState(topic: string): { c: ImaCollection; key: string } | undefined {
  const rest = topic.slice(`${HA}state/`.length);
  const i = rest.indexOf("/");
  if (i < 0) return undefined;
  const c = rest.slice(0, i);
  if (!COLLECTIONS.has(c)) return undefined;
  return { c: c as ImaCollection, key: decodeURIComponent(rest.slice(i + 1)) };
}
