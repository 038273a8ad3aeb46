// The NVE service's core, transport-free: requests in (raw payloads from {hv}),
// responses and events out. Every change runs as one Txn, serially: built,
// stored, programmed (`await programmer.apply(ops)`), then committed to the
// in-memory model and answered (PROTOCOL.md §2). The MQTT side is service.ts.
import { randomUUID } from "node:crypto";
import { Ajv } from "ajv";
import type { NveConfig, VnConfig } from "../config/types.js";
import { profileSchema } from "../config/schema.js";
import type { DataPlaneProgrammer, DpOp, VnProfile } from "../dataplane/ops.js";
import { decodeRequest, errorResponse, DEFAULT_MAX_PAYLOAD } from "../protocol/codec.js";
import { ProtocolError } from "../protocol/errors.js";
import { normIp, normMac } from "../protocol/addr.js";
import type { Addr, Event, Request, SyncVnic, VnRef } from "../protocol/types.js";
import type { Store, StoreWriter } from "../store/store.js";
import { VnCatalog } from "./catalog.js";
import { realClock, type Clock } from "./clock.js";
import { DEFAULT_LIMITS, type HandlerCtx, type Limits, type Settings } from "./context.js";
import { dispatch } from "./handlers/index.js";
import { sync } from "./handlers/sync.js";
import { Model, configHv, isConfigHv, splitKey } from "./model.js";
import { staticOps, staticVnics } from "./static.js";
import { cacheVn, cachedOps, cachedVns } from "./restore.js";
import { bindingKeys, localChangesFor, servedVnsOf, vnRefsOf } from "../ima/nve-glue.js";
import type { LocalChange } from "../ima/client.js";
import { Txn, replay, type Finished } from "./txn.js";
import { viewVnic } from "./vnic.js";

export interface NveCoreOptions {
  config: NveConfig;
  store: Store;
  programmer: DataPlaneProgrammer;
  clock?: Clock;
  log?: (line: string) => void;
  bootId?: string;
  limits?: Partial<Limits>;
  /** NVE-initiated events (PROTOCOL.md §4) to deliver to {hv}. */
  onEvent?: (hv: string, event: Event) => void;
  /**
   * The store failed to write or flush a change (ENOSPC, EIO): the NVE stops
   * (issue 10 item 8, "Durability"). From then on the core answers nothing and
   * changes nothing; this is called once. Default: exit the process with code 1
   * (INTERFACES.md: a runtime failure), so the supervisor restarts it from the
   * store, which holds exactly the changes that were acknowledged.
   */
  onFatal?: (e: Error) => void;
}

/** Marks a store write or flush that failed (fatal: see NveCoreOptions.onFatal). */
class StoreFailure extends Error {}

/**
 * The NVE's side of the mapping authority (host/ima/client.ts ImaClient,
 * PROTOCOL.md §6), told after every committed change: the VNs served (flood
 * lists) and the local bindings touched (announce/withdraw, seed §4.3).
 */
export interface ImaLink {
  setServed(vns: Iterable<number>): Promise<void>;
  applyLocal(changes: LocalChange[]): void;
  resolve(ref: VnRef): Promise<VnConfig>;
  /** Bindings the IMA publishes at other NVEs (for `nvedge show bindings`). */
  remoteBindings?(): { vn: number; mac: string; ips: string[]; nve: string; ip: string; seq: number }[];
}

const validateProfile = new Ajv({ strict: false, useDefaults: true }).compile(profileSchema);
const NVE_HV = "@nve"; // the NVE itself, for timer-driven and operator changes

export class NveCore {
  readonly model: Model;
  readonly catalog: VnCatalog;
  readonly settings: Settings;
  readonly clock: Clock;
  onEvent: (hv: string, event: Event) => void;
  /** Set once the IMA client runs (host/cli/run.ts); absent = no IMA. */
  ima: ImaLink | undefined;
  private readonly hvPort = new Map<string, string>();
  private readonly syncs = new Map<string, { syncId: string; vnics: SyncVnic[] }>();
  private queue: Promise<unknown> = Promise.resolve();
  private pending: { hv: string; port: string; req: Request; resolve(r: Record<string, unknown>): void }[] = [];
  private batchQueued = false;
  /** The last pipelined store commit's durability (see transact). */
  private durable: Promise<void> = Promise.resolve();
  private timer: unknown = undefined;
  private timerDue: number | undefined;
  private buckets = new Map<string, { tokens: number; at: number }>();
  private closed = false;
  /** Set when a store write or flush failed: nothing is answered or changed any more. */
  private fatal: Error | undefined;
  private readonly log: (line: string) => void;

  private constructor(private readonly o: NveCoreOptions) {
    const cfg = o.config;
    this.clock = o.clock ?? realClock;
    this.log = o.log ?? (() => {});
    this.onEvent = o.onEvent ?? (() => {});
    this.catalog = VnCatalog.fromConfig(structuredClone(cfg));
    this.model = new Model(cfg.ports.map((p) => p.name));
    for (const p of cfg.ports) for (const hv of p.hypervisors) this.hvPort.set(hv, p.name);
    this.settings = {
      nve: cfg.nve, bootId: o.bootId ?? randomUUID(),
      holdMs: cfg.timers?.holdMs ?? 10000, agentHoldMs: cfg.timers?.agentHoldMs ?? 30000,
      tagQuarantineMs: cfg.timers?.tagQuarantineMs ?? 5000,
      maxPayload: cfg.limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      limits: { ...DEFAULT_LIMITS, ...o.limits },
    };
  }

  /** Restores the store, programs the static config and everything stored, before anything is answered (§3). */
  static async open(o: NveCoreOptions): Promise<NveCore> {
    const core = new NveCore(o);
    core.model.load(o.store);
    // The IMA cache (VNs, flood lists, remote bindings) forwards before the IMA answers (issue 4; restore.ts).
    const ops = [...staticOps(o.config, core.catalog), ...cachedOps(o.store, o.config), ...core.model.programAll()];
    for (const v of cachedVns(o.store)) if (!core.catalog.get(v.id)) core.catalog.add(v);
    await o.programmer.apply(ops);
    const stat = staticVnics(o.config, core.catalog);
    for (const p of o.config.ports) {
      const hv = configHv(p.name);
      await core.transact(hv, p.name, (ctx) => sync(ctx, { id: "config", op: "sync", syncId: randomUUID(), vnics: stat.get(p.name) ?? [], final: true }));
    }
    core.log(`NVE ${core.settings.nve} ready: bootId ${core.settings.bootId}, ${core.model.vnics.size} VNICs restored/configured`);
    core.armTimer();
    // The (VN, IP) index is built after the data plane is programmed (issue 4:
    // restart time), in the next turn, before the broker connection can bring a request.
    setImmediate(() => core.model.warm());
    return core;
  }

  portOf(hv: string): string | undefined {
    return this.hvPort.get(hv);
  }

  hypervisors(): string[] {
    return [...this.hvPort.keys()];
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn);
    this.queue = p.catch(() => {});
    return p;
  }

  /** One all-or-nothing change: build → store → program → commit → log/events/timers. */
  private async transact<T>(hv: string, port: string, build: (ctx: HandlerCtx) => T, pipelined = false): Promise<T> {
    const tx = new Txn(this.model, this.clock.now(), this.settings.tagQuarantineMs);
    const ctx: HandlerCtx = { hv, port, tx, now: tx.now, catalog: this.catalog, settings: this.settings, syncs: this.syncs };
    const out = build(ctx);
    const f = tx.finish();
    // A store that pipelines (Store.commit, e.g. LMDB) lets the next change start
    // while this one is flushed; requests are still answered only once durable
    // (PROTOCOL.md §2): request() awaits `this.durable`, flushes complete in order.
    let durable: Promise<void> | undefined;
    if (!f.empty && this.o.store.commit && pipelined) durable = (await this.stored(() => this.o.store.commit!(f.write))).durable;
    else if (!f.empty) await this.stored(() => this.o.store.transaction(f.write));
    if (f.ops.length) {
      try {
        await this.o.programmer.apply(f.ops);
      } catch (e) {
        if (!f.empty) await this.stored(() => this.o.store.transaction(f.revert));
        this.log(`data plane refused ${f.ops.length} ops: ${(e as Error).message}`);
        throw new ProtocolError("internal", `the data plane refused the change: ${(e as Error).message}`);
      }
    }
    const keys = this.ima ? bindingKeys(tx.vnicChanges, this.model.vnics) : undefined;
    f.commit();
    this.toIma(keys);
    for (const l of tx.logs) this.log(l);
    if (durable) this.durable = durable;
    const events = tx.events;
    if (durable) void durable.then(() => { for (const e of events) this.onEvent(e.hv, e.event); }, (e) => this.die(e as Error));
    else for (const e of events) this.onEvent(e.hv, e.event);
    if (tx.timerChanges.size) this.armTimer();
    return out;
  }

  /**
   * After a commit: the IMA client's desired state follows the model (issue 6):
   * flood lists joined/left with the first/last VAP of a VN, bindings announced
   * on activation and withdrawn when they go; a migration hold keeps them
   * announced (seed §4.3), which the client decides from the committed records.
   */
  private toIma(keys: Set<string> | undefined): void {
    const ima = this.ima;
    if (!ima || !keys) return;
    void ima.setServed(servedVnsOf(this.model)).catch((e) => this.log(`ima: flood lists: ${(e as Error).message}`));
    if (keys.size) ima.applyLocal(localChangesFor(keys, this.model));
  }

  /**
   * VN references this NVE's catalog lacks are resolved through the IMA
   * (PROTOCOL.md §6 vn.resolve) before the request's transaction, whose handlers
   * resolve synchronously: added to the catalog, cached in the store (issue 4)
   * and programmed. A VN the IMA does not know is left to the handler (unknown-vn).
   */
  private async resolveRefs(req: Request): Promise<void> {
    const ima = this.ima;
    if (!ima) return;
    for (const ref of vnRefsOf(req as Parameters<typeof vnRefsOf>[0])) {
      if (!ref || typeof ref !== "object") continue;
      try {
        this.catalog.resolve(ref as VnRef);
        continue;
      } catch { /* not in the catalog: ask the IMA */ }
      let v: VnConfig;
      try {
        v = await ima.resolve(ref as VnRef);
      } catch (e) {
        this.log(`ima: cannot resolve VN ${JSON.stringify(ref)}: ${(e as Error).message}`);
        continue;
      }
      if (this.catalog.get(v.id)) continue;
      const rec: VnConfig = { id: v.id, vni: v.vni, profile: v.profile, ...(v.name ? { name: v.name } : {}), ...(v.alias ? { alias: v.alias } : {}) };
      await this.stored(() => this.o.store.transaction((w) => cacheVn(w, rec)));
      await this.o.programmer.apply([{ op: "vn", vn: rec.id, vni: rec.vni, profile: rec.profile }]);
      if (!this.catalog.get(rec.id)) this.catalog.add(rec);
      this.log(`ima: VN ${rec.id} (${rec.alias ?? rec.name ?? ""}) resolved through the IMA`);
    }
  }

  private takeToken(hv: string): boolean {
    const { ratePerSecond, rateBurst } = this.settings.limits;
    if (ratePerSecond <= 0) return true;
    const now = this.clock.now();
    const b = this.buckets.get(hv) ?? { tokens: rateBurst || ratePerSecond, at: now };
    b.tokens = Math.min(rateBurst || ratePerSecond, b.tokens + ((now - b.at) / 1000) * ratePerSecond);
    b.at = now;
    this.buckets.set(hv, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** A request payload from {hv} (the broker vouches for the identity, §1) → the response to publish. */
  async request(hv: string, payload: Uint8Array): Promise<Record<string, unknown>> {
    if (this.fatal) return new Promise(() => {}); // stopped: answers nothing more (issue 10 item 8)
    const d = decodeRequest(payload, this.settings.maxPayload);
    if (!d.ok) {
      this.log(`request from ${hv} refused: ${d.error.code}: ${d.error.message}`);
      return errorResponse(d.id, d.error) as Record<string, unknown>;
    }
    const req = d.req;
    const port = this.hvPort.get(hv);
    if (!port) {
      this.log(`authorization: ${hv} refused (${req.op}): not listed in any port's hypervisors`);
      return errorResponse(req.id, new ProtocolError("not-authorized", `${hv} is not a hypervisor of NVE ${this.settings.nve}`)) as Record<string, unknown>;
    }
    if (req.op === "hello") this.log(`authorization: ${hv} accepted on port ${port}`);
    if (!this.takeToken(hv))
      return errorResponse(req.id, new ProtocolError("rate-limited", `more than ${this.settings.limits.ratePerSecond} requests per second from ${hv}`)) as Record<string, unknown>;
    if (this.ima) await this.resolveRefs(req);
    return new Promise((resolve) => {
      this.pending.push({ hv, port, req, resolve });
      if (!this.batchQueued) {
        this.batchQueued = true;
        void this.enqueue(() => this.processBatch());
      }
    });
  }

  /**
   * Group commit: every request waiting when the queue reaches this point is
   * built in order, each seeing the ones before it (optimistic commit to the
   * model), then all are stored in one store transaction and programmed with
   * one programmer.apply(), and answered only once durable and programmed
   * (PROTOCOL.md §2). A store that pipelines (Store.commit, e.g. LMDB) lets the
   * next group start while this one is flushed. If the store or the data plane
   * refuses the group, the model is put back and the requests run again one by
   * one, so only the faulty one fails (all-or-nothing per request).
   */
  private async processBatch(): Promise<void> {
    this.batchQueued = false;
    const batch = this.pending.splice(0, this.pending.length);
    if (batch.length === 0 || this.fatal) return;
    if (this.closed) {
      for (const b of batch) b.resolve(errorResponse(b.req.id, new ProtocolError("internal", "the NVE is shutting down")) as Record<string, unknown>);
      return;
    }
    const savedSyncs = new Map([...this.syncs].map(([k, v]) => [k, { syncId: v.syncId, vnics: [...v.vnics] }]));
    const now = this.clock.now();
    const results: Record<string, unknown>[] = [];
    const done: { f: Finished; tx: Txn }[] = [];
    const imaKeys = new Set<string>();
    for (const b of batch) {
      const tx = new Txn(this.model, now, this.settings.tagQuarantineMs);
      const ctx: HandlerCtx = { hv: b.hv, port: b.port, tx, now, catalog: this.catalog, settings: this.settings, syncs: this.syncs };
      try {
        const reply = dispatch(ctx, b.req);
        const f = tx.finish();
        if (this.ima) for (const k of bindingKeys(tx.vnicChanges, this.model.vnics)) imaKeys.add(k);
        f.commit();
        done.push({ f, tx });
        results.push({ id: b.req.id, ok: true, ...reply() });
      } catch (e) {
        results.push(this.failure(b.hv, b.req, e));
      }
    }
    const ops = done.flatMap((d) => d.f.ops);
    const changed = done.filter((d) => !d.f.empty);
    let durable: Promise<void> | undefined;
    try {
      if (changed.length) {
        const write = (w: StoreWriter) => { for (const d of changed) replay(w, d.f.writes); };
        const store = this.o.store;
        if (store.commit) durable = (await this.stored(() => store.commit!(write))).durable;
        else await this.stored(() => store.transaction(write));
      }
      try {
        if (ops.length) await this.o.programmer.apply(ops);
      } catch (e) {
        if (changed.length) await this.stored(() => this.o.store.transaction((w) => { for (const d of [...changed].reverse()) replay(w, d.f.reverts); }));
        throw e;
      }
    } catch (e) {
      for (const d of [...done].reverse()) d.f.undo();
      this.syncs.clear();
      for (const [k, v] of savedSyncs) this.syncs.set(k, v);
      if (this.fatal) return; // the store failed: the group is undone in the model and nothing is answered
      if (batch.length === 1) {
        this.log(`data plane or store refused ${ops.length} ops: ${(e as Error).message}`);
        batch[0].resolve(errorResponse(batch[0].req.id, new ProtocolError("internal", `the change could not be stored or programmed: ${(e as Error).message}`)) as Record<string, unknown>);
        return;
      }
      // one by one, so only the request at fault fails
      for (const b of batch) {
        const r = await this.transact(b.hv, b.port, (ctx) => dispatch(ctx, b.req)).then(
          (reply) => ({ id: b.req.id, ok: true, ...reply() }), (err) => this.failure(b.hv, b.req, err));
        if (this.fatal) return;
        b.resolve(r);
      }
      return;
    }
    for (const d of done) for (const l of d.tx.logs) this.log(l);
    if (done.some((d) => d.tx.timerChanges.size)) this.armTimer();
    // The IMA hears of a change, and the End Devices of its answer and events, only once it is on disk.
    const answer = () => {
      if (this.fatal) return;
      this.toIma(imaKeys);
      for (const d of done) for (const ev of d.tx.events) this.onEvent(ev.hv, ev.event);
      batch.forEach((b, i) => b.resolve(results[i]));
    };
    if (!durable) return answer();
    this.durable = durable;
    durable.then(answer, (e) => this.die(e as Error));
  }

  /** Runs a store write; a failure stops the NVE (die) and is rethrown as a StoreFailure. */
  private async stored<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (e) {
      this.die(e as Error);
      throw new StoreFailure((e as Error).message);
    }
  }

  /**
   * A store write or flush failed (issue 10 item 8): the model may be ahead of
   * the disk, so nothing more is answered (no `ok` for a change that is not
   * on disk, none of a later change built on it), no timer fires, and onFatal
   * ends the process; a restart restores exactly what was acknowledged.
   */
  private die(e: Error): void {
    if (this.fatal) return;
    this.fatal = e;
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.log(`FATAL: the store failed: ${e.message}; answering nothing more, stopping (the store holds every acknowledged change; restart this NVE)`);
    const onFatal = this.o.onFatal ?? (() => process.exit(1));
    onFatal(e);
  }

  private failure(hv: string, req: Request, e: unknown): Record<string, unknown> {
    if (e instanceof StoreFailure) return errorResponse(req.id, new ProtocolError("internal", e.message)) as Record<string, unknown>; // never sent: fatal
    if (e instanceof ProtocolError) {
      this.log(`request ${req.id} (${req.op}) from ${hv}: ${e.code}: ${e.message}`);
      return errorResponse(req.id, e) as Record<string, unknown>;
    }
    this.log(`request ${req.id} (${req.op}) from ${hv}: internal error: ${(e as Error).stack ?? e}`);
    return errorResponse(req.id, new ProtocolError("internal", (e as Error).message)) as Record<string, unknown>;
  }

  /** An agent's retained status (PROTOCOL.md §3): a will starts the agentHoldMs timer. */
  agentStatus(hv: string, online: boolean): Promise<void> {
    const port = this.hvPort.get(hv);
    if (!port) return Promise.resolve();
    return this.enqueue(() => this.transact(hv, port, (ctx) => {
      const prev = this.model.hvs.get(hv);
      if (online) {
        if (!prev?.online) ctx.tx.putHv({ hv, online: true, since: ctx.now });
        ctx.tx.clearTimer("agent-hold", hv);
        if (!prev?.online) ctx.tx.log(`agent ${hv}: online`);
        return;
      }
      if (prev?.online === false) return; // already counting (or held forever)
      ctx.tx.putHv({ hv, online: false, since: ctx.now });
      const hold = this.settings.agentHoldMs;
      if (hold > 0) ctx.tx.setTimer("agent-hold", hv, ctx.now + hold);
      ctx.tx.log(`agent ${hv}: offline (will); forwarding kept ${hold > 0 ? `for ${hold} ms` : "until it returns (agentHoldMs 0)"}`);
    })).catch((e) => this.log(`agent status ${hv}: ${(e as Error).message}`));
  }

  private armTimer(): void {
    if (this.closed) return;
    let next: number | undefined;
    for (const t of this.model.timers.values()) if (next === undefined || t.due < next) next = t.due;
    if (next === this.timerDue) return;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.timerDue = next;
    if (next === undefined) return;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      this.timerDue = undefined;
      this.enqueue(() => this.fireTimers()).catch((e) => this.log(`timers: ${(e as Error).message}`));
    }, next - this.clock.now());
  }

  /** Migration holds and agent holds that ran out: purge, as a shutdown (PROTOCOL.md §2, §3). */
  private async fireTimers(): Promise<void> {
    if (this.closed) return;
    const now = this.clock.now();
    const due = [...this.model.timers.values()].filter((t) => t.due <= now);
    if (due.length === 0) return this.armTimer();
    await this.transact(NVE_HV, "", (ctx) => {
      for (const t of due) {
        ctx.tx.clearTimer(t.kind, t.subject);
        if (t.kind === "migration-hold") {
          const r = ctx.tx.peek(t.subject);
          if (r?.hold && r.hold.until <= now) {
            ctx.tx.del(r.vnic);
            ctx.tx.log(`VNIC ${r.vnic}: migration hold of ${this.settings.holdMs} ms expired, bindings purged`);
          }
        } else {
          const ids = ctx.tx.vnicsOf(t.subject);
          for (const id of ids) ctx.tx.del(id);
          ctx.tx.log(`agent ${t.subject}: not back within agentHoldMs (${this.settings.agentHoldMs} ms): ${ids.length} VNICs deactivated (shutdown)`);
        }
      }
    });
    this.armTimer();
  }

  // ---------------------------------------------------------------- NVE-initiated (Req-6, Req-9)

  private ownerTxn<T>(vnic: string, build: (ctx: HandlerCtx, hv: string) => T): Promise<T> {
    return this.enqueue(() => {
      const r = this.model.vnics.get(vnic);
      if (!r) throw new ProtocolError("unknown-vnic", `no VNIC ${vnic} on this NVE`, "vnic");
      return this.transact(r.hv, r.port, (ctx) => build(ctx, r.hv));
    });
  }

  /** An operator removes a VNIC: every VN is disconnected and the owner told (vn.disconnected, Req-6). */
  removeVnic(vnic: string, reason = "operator"): Promise<void> {
    return this.ownerTxn(vnic, (ctx, hv) => {
      const r = ctx.tx.peek(vnic)!;
      for (const b of r.vns) if (!isConfigHv(hv)) ctx.tx.emit(hv, { event: "vn.disconnected", vnic, vn: this.catalog.full(b.vn), reason });
      ctx.tx.del(vnic);
      ctx.tx.clearTimer("migration-hold", vnic);
      ctx.tx.log(`operator: VNIC ${vnic} removed (${reason})`);
    });
  }

  /** The NVE disconnects one VNIC from one VN (Req-6). */
  disconnectVnic(vnic: string, vnRef: VnRef | number | string, reason = "operator"): Promise<void> {
    return this.ownerTxn(vnic, (ctx, hv) => {
      const vn = this.catalog.resolve(vnRef).id;
      const r = ctx.tx.edit(vnic)!;
      if (!r.vns.some((b) => b.vn === vn)) throw new ProtocolError("not-connected", `VNIC ${vnic} is not connected to VN ${vn}`, "vn");
      r.vns = r.vns.filter((b) => b.vn !== vn);
      r.vns.length ? ctx.tx.put(r) : ctx.tx.del(vnic);
      if (!isConfigHv(hv)) ctx.tx.emit(hv, { event: "vn.disconnected", vnic, vn: this.catalog.full(vn), reason });
      ctx.tx.log(`operator: VNIC ${vnic} disconnected from VN ${vn} (${reason})`);
    });
  }

  /** The NVE de-associates addresses of a VNIC (Req-9): addr.disassociated to the owner. */
  disassociate(vnic: string, vnRef: VnRef | number | string, addrs: Addr[], reason = "operator"): Promise<void> {
    return this.ownerTxn(vnic, (ctx, hv) => {
      const vn = this.catalog.resolve(vnRef).id;
      const r = ctx.tx.edit(vnic)!;
      const b = r.vns.find((x) => x.vn === vn);
      if (!b) throw new ProtocolError("not-connected", `VNIC ${vnic} is not connected to VN ${vn}`, "vn");
      const removed: Addr[] = [];
      for (const a of addrs) {
        const mac = normMac(a.mac);
        const e = b.addrs.find((x) => x.mac === mac);
        if (!e) continue;
        if (!a.ips?.length) {
          b.addrs = b.addrs.filter((x) => x !== e);
          removed.push({ mac, ips: e.ips });
        } else {
          const drop = new Set(a.ips.map(normIp));
          removed.push({ mac, ips: e.ips.filter((ip) => drop.has(ip)) });
          e.ips = e.ips.filter((ip) => !drop.has(ip));
        }
      }
      ctx.tx.put(r);
      if (!isConfigHv(hv) && removed.length) ctx.tx.emit(hv, { event: "addr.disassociated", vnic, vn: this.catalog.full(vn), addrs: removed, reason });
      ctx.tx.log(`operator: VNIC ${vnic} VN ${vn}: ${removed.length} addresses de-associated (${reason})`);
    });
  }

  /** The operator removes a VN: every VNIC is disconnected from it (containment, seed §3.1), then the VN leaves the data plane. */
  removeVn(vnRef: VnRef | number | string, reason = "vn-removed"): Promise<number> {
    return this.enqueue(() => this.transact(NVE_HV, "", (ctx) => {
      const vn = this.catalog.resolve(vnRef).id;
      let n = 0;
      for (const [id, rec] of this.model.vnics) {
        if (!rec.vns.some((b) => b.vn === vn)) continue;
        const r = ctx.tx.edit(id)!;
        r.vns = r.vns.filter((b) => b.vn !== vn);
        r.vns.length ? ctx.tx.put(r) : ctx.tx.del(id);
        if (!isConfigHv(r.hv)) ctx.tx.emit(r.hv, { event: "vn.disconnected", vnic: id, vn: this.catalog.full(vn), reason });
        n++;
      }
      ctx.tx.tail.push({ op: "vn.del", vn });
      ctx.tx.log(`operator: VN ${vn} removed, ${n} VNICs disconnected`);
      return n;
    })).then((n) => {
      this.catalog.remove(this.catalog.resolve(vnRef).id);
      return n;
    });
  }

  /** A VN's profile changes (seed §4.5): reprogrammed, and every End Device using the VN is told (vn.profile event). */
  setProfile(vnRef: VnRef | number | string, profile: VnProfile): Promise<void> {
    return this.enqueue(async () => {
      const v = this.catalog.resolve(vnRef);
      const p = structuredClone(profile);
      if (!validateProfile(p)) throw new ProtocolError("bad-request", `profile: ${validateProfile.errors?.[0]?.instancePath} ${validateProfile.errors?.[0]?.message}`, "profile");
      const ops: DpOp[] = [{ op: "vn", vn: v.id, vni: v.vni, profile: p as VnProfile }];
      await this.o.programmer.apply(ops);
      this.catalog.setProfile(v.id, p as VnProfile);
      const hvs = new Set<string>();
      for (const r of this.model.vnics.values()) if (r.vns.some((b) => b.vn === v.id) && !isConfigHv(r.hv)) hvs.add(r.hv);
      for (const hv of hvs) this.onEvent(hv, { event: "vn.profile", vn: this.catalog.full(v.id), profile: p as VnProfile });
      this.log(`operator: VN ${v.id} profile changed; ${hvs.size} End Devices told`);
    });
  }

  /** Maintenance: every End Device of this NVE gets nve.draining (PROTOCOL.md §4). */
  drain(): string[] {
    const hvs = this.hypervisors();
    for (const hv of hvs) this.onEvent(hv, { event: "nve.draining" });
    this.log(`operator: draining, ${hvs.length} End Devices told`);
    return hvs;
  }

  // ---------------------------------------------------------------- views (nvedge show)

  private tagOf = (port: string, vn: number) => this.model.vaps.get(`${port}|${vn}`)?.tag;

  /** The NVE's view of one End Device (the `show` op). */
  viewHv(hv: string): { port: string | undefined; vnics: Record<string, unknown>[] } {
    const ids = [...(this.model.byHv.get(hv) ?? [])].sort();
    return { port: this.hvPort.get(hv), vnics: ids.map((id) => viewVnic({ catalog: this.catalog, tagOf: this.tagOf }, this.model.vnics.get(id)!)) };
  }

  bindings(): Record<string, unknown>[] {
    const rows: Record<string, unknown>[] = [];
    const ipsOf = new Map<string, string[]>();
    for (const [k, o] of this.model.ipOwner) {
      const [vn, ip] = splitKey(k);
      const mk = `${vn}|${o.mac}`;
      ipsOf.set(mk, [...(ipsOf.get(mk) ?? []), ip]);
    }
    for (const [k, owner] of this.model.macOwner) {
      const [vn, mac] = splitKey(k);
      const r = this.model.vnics.get(owner)!;
      const row: Record<string, unknown> = { vn, mac, ips: ipsOf.get(k) ?? [], where: "local", port: r.port, tag: this.tagOf(r.port, vn),
        vnic: owner, hv: r.hv, state: r.state };
      if (r.hold) row.holdUntil = r.hold.until;
      rows.push(row);
    }
    for (const rem of this.o.config.remotes)
      for (const a of rem.addrs) {
        const vn = this.catalog.resolve(a.vn).id;
        rows.push({ vn, mac: normMac(a.mac), ips: (a.ips ?? []).map(normIp), where: "remote", nve: rem.nve, ip: rem.ip });
      }
    for (const r of this.ima?.remoteBindings?.() ?? []) rows.push({ ...r, where: "remote", source: "ima" });
    return rows.sort((a, b) => (a.vn as number) - (b.vn as number) || String(a.mac).localeCompare(String(b.mac)));
  }

  vns(): Record<string, unknown>[] {
    return this.catalog.all().map((v) => ({
      id: v.id, name: v.name, alias: v.alias, vni: v.vni, encap: v.profile.encap, mtu: v.profile.mtu,
      ports: [...this.model.vaps.values()].filter((x) => x.vn === v.id)
        .map((x) => ({ port: x.port, tag: x.tag, vnics: this.model.vapCount.get(`${x.port}|${v.id}`) ?? 0 })),
    }));
  }

  ports(): Record<string, unknown>[] {
    const now = this.clock.now();
    return this.o.config.ports.map((p) => {
      const alloc = this.model.alloc(p.name);
      return {
        port: p.name,
        hypervisors: p.hypervisors.map((hv) => {
          const h = this.model.hvs.get(hv);
          const t = this.model.timers.get(`agent-hold|${hv}`);
          return { hv, state: h ? (h.online ? "online" : "offline") : "unknown", vnics: this.model.byHv.get(hv)?.size ?? 0, ...(t ? { holdUntil: t.due } : {}) };
        }),
        vaps: [...alloc.tags].sort((a, b) => a[0] - b[0]).map(([tag, vn]) => ({ tag, vn, vnics: this.model.vapCount.get(`${p.name}|${vn}`) ?? 0 })),
        quarantine: [...alloc.quarantine].filter(([, q]) => q.until > now).map(([tag, q]) => ({ tag, vn: q.vn, until: q.until })),
      };
    });
  }

  /** Waits for every queued change, then refuses new ones and stops the timer. */
  async close(): Promise<void> {
    await this.queue;
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }
}
