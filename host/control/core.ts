// The NVE service's core, transport-free: requests in (raw payloads from {hv}),
// responses and events out. Every change runs as one Txn, serially, through one
// group commit (runGroup): built and committed to the in-memory model, stored,
// programmed (`await programmer.apply(ops)`), undone if either refuses, and
// answered once durable (PROTOCOL.md §2). The MQTT side is service.ts.
import { randomUUID } from "node:crypto";
import { hvId, type NveConfig, type VnConfig } from "../config/types.js";
import type { DataPlaneProgrammer, DpOp, VnProfile } from "../dataplane/ops.js";
import { decodeRequest, errorResponse, okAnswer, sniffId, DEFAULT_MAX_PAYLOAD } from "../protocol/codec.js";
import { ProtocolError } from "../protocol/errors.js";
import type { Addr, Event, Request, VnRef } from "../protocol/types.js";
import type { Store, StoreWriter } from "../store/store.js";
import { VnCatalog } from "./catalog.js";
import { monoOf, realClock, type Clock } from "../domain/clock.js";
import { DEFAULT_LIMITS, type HandlerCtx, type Limits, type Settings, type SyncState } from "./context.js";
import { dispatch } from "./handlers/index.js";
import { discard, sync, syncHoldMs } from "./handlers/sync.js";
import { Model, configHv, isConfigHv } from "./model.js";
import { MAX_TAG, MIN_TAG } from "./tags.js";
import { DataPlaneError } from "../dataplane/dataplane.js";
import { staticOps, staticVnics } from "./static.js";
import { cachedOps, cachedVns } from "../ima-client/cache.js";
import { bindingKeys, localChangesFor, servedVnsOf } from "../ima-client/glue.js";
import type { ImaLink } from "../ima-client/wire.js";
import { Txn, replay, type Finished, type TxnGuard } from "./txn.js";
import * as views from "./views.js";
import type { ViewSource } from "./views.js";
import { removeVnic as opRemoveVnic } from "./handlers/operator/remove-vnic.js";
import { disconnectVnic as opDisconnectVnic } from "./handlers/operator/disconnect-vnic.js";
import { disassociate as opDisassociate } from "./handlers/operator/disassociate.js";
import { removeVn as opRemoveVn } from "./handlers/operator/remove-vn.js";
import { setProfile as opSetProfile } from "./handlers/operator/set-profile.js";
import { drain as opDrain } from "./handlers/operator/drain.js";

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
  /**
   * The data plane already holds the static, cached and stored state (it was
   * started from a table image taken at the store's last transaction: issue
   * 15, ./dp-image.ts): open() restores the model without programming it again.
   */
  programmed?: boolean;
}

/** Marks a store write or flush that failed (fatal: see NveCoreOptions.onFatal). */
class StoreFailure extends Error {}

/** How a job of a group ended: its answer, or why it failed (`refused`: the store or data plane refused its commit). */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown; refused?: boolean };

/** One change of a group commit (runGroup): a request (`req`) or one of the NVE's own. */
interface Job {
  hv: string;
  port: string;
  req?: Request;
  /** Builds the change on ctx.tx; returns the answer, made once the Txn is finished. */
  run(ctx: HandlerCtx): () => unknown;
  settle(o: Outcome): void;
}

const NVE_HV = "@nve"; // the NVE itself, for timer-driven and operator changes
/** The data plane's prefix table (assembly/tables/index.ts MAX_PREFIXES). */
const PREFIX_CAPACITY = 1024;
/** Agent statuses acted on at once per {hv}; beyond, one per STATUS_DEBOUNCE_MS, the latest wins (issue 10 item 4). */
const STATUS_BURST = 4;
/** A request costs one rate token per started TOKEN_BYTES (takeToken). */
const TOKEN_BYTES = 64 * 1024;
const STATUS_DEBOUNCE_MS = 1000;
/** One log line per {hv} and refusal code per this time; the others are counted (issue 10: "logged once (rate-limited)"). */
const REFUSAL_LOG_MS = 10_000;

/** A data-plane refusal because a table is full: a shared table, so limit-exceeded, not internal (PROTOCOL.md §2 Authority). */
// One error per {hv}, as for rate-limited: a flood without hello builds no stack trace per message.
const helloErrors = new Map<string, ProtocolError>();
const helloRequired = (hv: string) => {
  let e = helloErrors.get(hv);
  if (!e) {
    if (helloErrors.size > 10_000) helloErrors.clear(); // bounded: identities come from the broker
    helloErrors.set(hv, (e = new ProtocolError("hello-required", `${hv}: send hello first on every session (PROTOCOL.md §2)`)));
  }
  return e;
};

function tableFull(e: unknown): boolean {
  return e instanceof DataPlaneError && /table full|at most \d+ prefix bindings/.test(e.message);
}

/**
 * A queued request as its own group-commit job (runGroup): run and settle are
 * its methods, not two closures and a wrapper object per request
 * (processBatch; issue 15: garbage per attach).
 */
class RequestJob implements Job {
  constructor(private readonly core: NveCore, readonly hv: string, readonly port: string, readonly req: Request,
    readonly resolve: (r: Record<string, unknown>) => void) {}
  run(ctx: HandlerCtx): () => unknown {
    return dispatch(ctx, this.req);
  }
  settle(o: Outcome): void {
    this.core.settleRequest(this, o);
  }
}

/** A request that passed NveCore.admit's checks, and its {hv}'s port. */
class Admitted {
  constructor(readonly req: Request, readonly port: string) {}
}

/** A handler's context (HandlerCtx): one object per change, its authorize a method, not a closure per request (issue 15: garbage per attach). */
class Ctx implements HandlerCtx {
  readonly now: number;
  readonly catalog: VnCatalog;
  readonly settings: Settings;
  readonly syncs: SyncState;
  constructor(private readonly core: NveCore, readonly hv: string, readonly port: string, readonly tx: Txn, readonly mono: number) {
    this.now = tx.now;
    this.catalog = core.catalog;
    this.settings = core.settings;
    this.syncs = core.syncState;
  }

  authorize(v: VnConfig, field: string): void {
    if (!this.core.mayUse(this.hv, v))
      throw new ProtocolError("not-authorized", `${this.hv} may not use VN ${v.id}${v.alias ? ` (${v.alias})` : ""} on this NVE`, field);
  }
}

const NO_FINISHED: readonly Finished[] = Object.freeze([]);

/** The ops of a group's changes in order, in one array of their total length. */
function opsOf(group: Finished[]): DpOp[] {
  let n = 0;
  for (const f of group) n += f.ops.length;
  const out = new Array<DpOp>(n);
  let i = 0;
  for (const f of group) for (const op of f.ops) out[i++] = op;
  return out;
}

export class NveCore {
  readonly model: Model;
  readonly catalog: VnCatalog;
  readonly settings: Settings;
  readonly clock: Clock;
  onEvent: (hv: string, event: Event) => void;
  /** Set once the IMA client runs (host/cli/run.ts); absent = no IMA. */
  ima: ImaLink | undefined;
  /** The gleaned bindings (host/control/glean.ts), for `show bindings`; set by host/cli/run.ts. */
  gleaned: (() => { vn: number; mac: string; ips: string[]; port: string; seen: number }[]) | undefined;
  private readonly hvPort = new Map<string, string>();
  /** hv → the VN lists it must be in (its port's, its own), each as ids/names/aliases in text; none = every VN */
  private readonly hvVns = new Map<string, Set<string>[]>();
  private readonly hvsOnPort = new Map<string, number>();
  private readonly syncs: SyncState = { open: new Map(), finished: new Map(), discarded: new Map() };
  /** The syncs' state, for the handlers' context (Ctx). */
  get syncState(): SyncState { return this.syncs; }
  private syncSweep: unknown = undefined;
  /** {hv}s whose session began with hello (PROTOCOL.md §2 Authority); an agent's offline status ends it */
  private readonly sessions = new Set<string>();
  private readonly helloQueued = new Map<string, number>();
  /** agent statuses: the latest received, a token bucket of changes acted on, a pending trailing change */
  private readonly status = new Map<string, { seen: boolean; tokens: number; at: number; timer?: unknown }>();
  private readonly refusals = new Map<string, { at: number; suppressed: number }>();
  private readonly rateErrors = new Map<string, ProtocolError>();
  private readonly guard: TxnGuard;
  private queue: Promise<unknown> = Promise.resolve();
  private pending: RequestJob[] = [];
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
    this.indexPorts(cfg);
    const { maxPayload, ...cfgLimits } = cfg.limits ?? {} as Partial<NveConfig["limits"]>;
    this.settings = {
      nve: cfg.nve, bootId: o.bootId ?? randomUUID(),
      holdMs: cfg.timers?.holdMs ?? 10000, agentHoldMs: cfg.timers?.agentHoldMs ?? 30000,
      tagQuarantineMs: cfg.timers?.tagQuarantineMs ?? 5000,
      maxPayload: maxPayload ?? DEFAULT_MAX_PAYLOAD,
      limits: { ...DEFAULT_LIMITS, ...cfgLimits, ...o.limits },
    };
    const l = this.settings.limits;
    this.guard = {
      maxPrefixesPerHv: l.maxPrefixesPerHv, prefixCapacity: PREFIX_CAPACITY,
      // An {hv} alone on its port may use every tag (then tag-exhausted); several share them evenly.
      tagShare: (hv) => {
        const n = this.hvsOnPort.get(this.hvPort.get(hv) ?? "") ?? 0;
        return n > 1 ? Math.floor((MAX_TAG - MIN_TAG + 1) / n) : undefined;
      },
    };
  }

  /** May {hv} use VN `v`? Its port's `vns` and its own narrow it (PROTOCOL.md §2 Authority, INTERFACES.md). */
  /** Which port each {hv} is on, how many share it, and its VN allow-lists (the port's, then its own). */
  private indexPorts(cfg: NveConfig): void {
    this.hvsOnPort.clear();
    this.hvPort.clear();
    this.hvVns.clear();
    const text = (l: (number | string)[]) => new Set(l.map(String));
    for (const p of cfg.ports) {
      this.hvsOnPort.set(p.name, p.hypervisors.length);
      for (const h of p.hypervisors) {
        this.hvPort.set(hvId(h), p.name);
        const lists = [p.vns, typeof h === "string" ? undefined : h.vns].filter((l): l is (number | string)[] => l !== undefined);
        if (lists.length) this.hvVns.set(hvId(h), lists.map(text));
      }
    }
  }

  mayUse(hv: string, v: VnConfig): boolean {
    if (isConfigHv(hv)) return true;
    const lists = this.hvVns.get(hv);
    if (!lists) return true;
    const names = [String(v.id), v.alias, v.name];
    return lists.every((l) => names.some((n) => n !== undefined && l.has(n)));
  }

  private ctxFor(hv: string, port: string, tx: Txn): HandlerCtx {
    return new Ctx(this, hv, port, tx, monoOf(this.clock));
  }

  /** Logs a refusal once per REFUSAL_LOG_MS per {hv} and code, counting the ones left out. */
  private refused(hv: string, code: string, line: string | (() => string)): void {
    const k = `${hv}|${code}`;
    const now = monoOf(this.clock);
    const r = this.refusals.get(k);
    if (r && now - r.at < REFUSAL_LOG_MS) {
      r.suppressed++;
      return;
    }
    if (this.refusals.size > 10_000) this.refusals.clear(); // bounded: identities come from the broker
    this.refusals.set(k, { at: now, suppressed: 0 });
    const text = typeof line === "string" ? line : line();
    this.log(r?.suppressed ? `${text} (${r.suppressed} more like it from ${hv} not logged)` : text);
  }

  /** Restores the store, programs the static config and everything stored, before anything is answered (§3). */
  static async open(o: NveCoreOptions): Promise<NveCore> {
    const core = new NveCore(o);
    if (o.config.auth)
      for (const p of o.config.ports)
        if (!p.vns) core.log(`warning: port ${p.name} has no "vns" list: its hypervisors may use every VN (INTERFACES.md ports[].vns)`);
    core.model.load(o.store);
    // The IMA cache (VNs, flood lists, remote bindings) forwards before the IMA answers (issue 4; host/ima-client/cache.ts).
    const ops = [...staticOps(o.config, core.catalog), ...cachedOps(o.store, o.config), ...core.model.programAll()];
    for (const v of cachedVns(o.store)) if (!core.catalog.get(v.id)) core.catalog.add(v);
    if (!o.programmed) await o.programmer.apply(ops);
    const stat = staticVnics(o.config, core.catalog);
    for (const p of o.config.ports) {
      const hv = configHv(p.name);
      await core.transact(hv, p.name, (ctx) => sync(ctx, { id: "config", op: "sync", syncId: randomUUID(), vnics: stat.get(p.name) ?? [], final: true }));
    }
    // The (VN, IP) index is built before ready, not after (issue 15: ready
    // means everything forwarding and answering need is built); the data
    // plane is already programmed (or started from its image) by now.
    core.model.warm();
    core.log(`NVE ${core.settings.nve} ready: bootId ${core.settings.bootId}, ${core.model.vnics.size} VNICs restored/configured`);
    core.armTimer();
    return core;
  }

  /** Unfinished syncs held in memory (PROTOCOL.md §2 Authority bounds them): how many, their chunks and entries. */
  syncStats(): { open: number; chunks: number; entries: number } {
    let chunks = 0, entries = 0;
    for (const o of this.syncs.open.values()) {
      chunks += o.chunks.length;
      for (const c of o.chunks) entries += c.entries;
    }
    return { open: this.syncs.open.size, chunks, entries };
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

  /**
   * One all-or-nothing change: a group of one through the request queue's
   * group commit (runGroup, issue 16 "one commit path"): built and committed
   * to the model first, stored and programmed, undone if either refuses, and
   * resolved (with its events sent) only once durable. Called from inside the
   * queue (enqueue), so it runs at once rather than waiting behind itself.
   */
  private transact<T>(hv: string, port: string, build: (ctx: HandlerCtx) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      void this.runGroup([{
        hv, port,
        run: (ctx) => { const v = build(ctx); return () => v; },
        settle: (o) => o.ok ? resolve(o.value as T) : reject(o.error),
      }], false);
    });
  }

  /**
   * The one commit path (issue 16): changes already committed to the model,
   * in order, are written to the store in one transaction and programmed with
   * one programmer.apply(). If the data plane refuses, the store writes are
   * reverted; if either refuses, the model is undone (last first) and the
   * error rethrown (a store failure as StoreFailure: the NVE stops). With
   * `pipelined` and a store that pipelines (Store.commit, e.g. LMDB) the next
   * group may start while this one is flushed: the `durable` returned
   * resolves once flushed, and is this.durable until the next (PROTOCOL.md
   * §2: answers wait for it).
   */
  private async commitGroup(group: Finished[], pipelined: boolean): Promise<{ durable?: Promise<void> }> {
    // A group of one (every request when they come one at a time, issue 15)
    // uses its change's own lists: no filtered copy, no flatMap (a generic
    // builtin, ~1 % of a paced request's CPU); neither list is written to
    // (the IMA's overlay copies before it re-points an op).
    const changed = group.length === 1 ? (group[0].empty ? NO_FINISHED : group) : group.filter((f) => !f.empty);
    const all = group.length === 1 ? group[0].ops : opsOf(group);
    const ops = this.ima?.overlay?.(all) ?? all; // the IMA client's re-pointed MACs in the same apply (issue 15)
    let durable: Promise<void> | undefined;
    try {
      if (changed.length) {
        const write = (w: StoreWriter) => { for (const f of changed) replay(w, f.writes); };
        const store = this.o.store;
        // as stored() does, without its closure and async wrapper per group
        try {
          if (store.commit && pipelined) durable = (await store.commit(write)).durable;
          else await store.transaction(write);
        } catch (e) {
          throw this.storeFailed(e);
        }
      }
      try {
        if (ops.length) await this.o.programmer.apply(ops);
      } catch (e) {
        if (changed.length) await this.stored(() => this.o.store.transaction((w) => { for (const f of [...changed].reverse()) replay(w, f.reverts()); }));
        throw e;
      }
    } catch (e) {
      for (const f of [...group].reverse()) f.undo();
      throw e;
    }
    if (durable) this.durable = durable;
    return { durable }; // wrapped: an async function returning the promise itself would wait for the flush
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
   * A VN the requester may not use is refused here (not-authorized), before it
   * is cached or programmed (PROTOCOL.md §2 Authority: "whether it comes from the
   * catalog or from the IMA").
   */
  private async resolveRefs(hv: string, req: Request): Promise<ProtocolError | undefined> {
    const ima = this.ima;
    if (!ima) return undefined;
    const refs: [unknown, string][] = req.op === "sync"
      ? req.vnics.flatMap((v, i) => v.vns.map((b, j): [unknown, string] => [b.vn, `vnics[${i}].vns[${j}].vn`]))
      : "vn" in req ? [[req.vn, "vn"]] : [];
    const found: VnConfig[] = [];
    for (const [ref, field] of refs) {
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
      if (!this.mayUse(hv, v))
        return new ProtocolError("not-authorized", `${hv} may not use VN ${v.id}${v.alias ? ` (${v.alias})` : ""} on this NVE`, field);
      if (this.catalog.get(v.id) || found.some((f) => f.id === v.id)) continue;
      found.push({ id: v.id, vni: v.vni, profile: v.profile, ...(v.name ? { name: v.name } : {}), ...(v.alias ? { alias: v.alias } : {}) });
    }
    // Cached, programmed and added to the catalog as one change in the queue (issue 16 "one commit path").
    if (found.length)
      await this.enqueue(() => this.transact(NVE_HV, "", (ctx) => {
        for (const rec of found) {
          if (this.catalog.get(rec.id)) continue; // resolved meanwhile by another request
          ctx.tx.setVn(rec.id, rec, true);
          ctx.tx.log(`ima: VN ${rec.id} (${rec.alias ?? rec.name ?? ""}) resolved through the IMA`);
        }
      }));
    return undefined;
  }

  /**
   * A token bucket per {hv} (limits.ratePerSecond, limits.burst), on the
   * monotonic clock. A request costs one token per started 64 KiB, so the
   * limit bounds the bytes the NVE must parse as well as the requests.
   */
  private takeToken(hv: string, bytes: number): boolean {
    const { ratePerSecond, burst } = this.settings.limits;
    if (ratePerSecond <= 0) return true;
    const depth = Math.max(1, burst || ratePerSecond);
    const now = monoOf(this.clock);
    const b = this.buckets.get(hv) ?? { tokens: depth, at: now };
    b.tokens = Math.min(depth, b.tokens + ((now - b.at) / 1000) * ratePerSecond);
    b.at = now;
    this.buckets.set(hv, b);
    const cost = Math.max(1, Math.ceil(bytes / TOKEN_BYTES));
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
  }

  private refuse(hv: string, req: { id: string | null; op?: string }, e: ProtocolError): Record<string, unknown> {
    // the line is built only when logged: a flood's refusals are counted, not formatted (issue 10 soak)
    this.refused(hv, e.code, () => `request ${req.id}${req.op ? ` (${req.op})` : ""} from ${hv} refused: ${e.code}: ${e.message}`);
    return errorResponse(req.id, e) as Record<string, unknown>;
  }

  /**
   * Whether a `rate-limited` answer to {hv} is to be sent: at most
   * limits.ratePerSecond of them per second (burst limits.burst) on top of the
   * requests served, so a flood costs the NVE and the broker at most twice
   * the rate in answers; the rest is dropped unanswered (the sender's own
   * timeout tells it), issue 10 item 4.
   */
  answerRateLimited(hv: string): boolean {
    return this.takeToken(`${hv}\u0000answers`, 0);
  }

  /**
   * A request payload from {hv} (the broker vouches for the identity, §1) → the
   * response to publish. `seen.op` is set to the request's op once it is
   * decoded (the metrics' label; left as it was for what does not decode).
   */
  request(hv: string, payload: Uint8Array, seen?: { op: string }): Promise<Record<string, unknown>> {
    // Not an async function: its promise would wrap the queued one, two more
    // promises and microtask hops per request (issue 15: garbage per attach).
    if (this.fatal) return new Promise(() => {}); // stopped: answers nothing more (issue 10 item 8)
    let r: ReturnType<NveCore["admit"]>;
    try {
      r = this.admit(hv, payload, seen);
    } catch (e) {
      return Promise.reject(e); // as the async function did: the caller's .then sees it, never a throw
    }
    if (!(r instanceof Admitted)) return Promise.resolve(r);
    if (this.ima) return this.resolveThenQueue(hv, r.port, r.req);
    return this.queueRequest(hv, r.port, r.req);
  }

  private async resolveThenQueue(hv: string, port: string, req: Request): Promise<Record<string, unknown>> {
    const no = await this.resolveRefs(hv, req);
    if (no) return this.refuse(hv, req, no);
    return this.queueRequest(hv, port, req);
  }

  private queueRequest(hv: string, port: string, req: Request): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.pending.push(new RequestJob(this, hv, port, req, resolve));
      if (!this.batchQueued) {
        this.batchQueued = true;
        void this.enqueue(() => this.processBatch());
      }
    });
  }

  /** The checks before a request is queued: its answer if refused, else the decoded request and its {hv}'s port. */
  private admit(hv: string, payload: Uint8Array, seen?: { op: string }): Record<string, unknown> | Admitted {
    // The rate limit comes before decoding, so a flood costs the NVE no parsing (issue 10 item 4).
    if (this.hvPort.has(hv) && !this.takeToken(hv, payload.length)) {
      const l = this.settings.limits;
      // one error object per {hv}: a flood does not build a stack trace per message
      let e = this.rateErrors.get(hv);
      if (!e) this.rateErrors.set(hv, (e = new ProtocolError("rate-limited", `more than ${l.ratePerSecond} requests per second from ${hv} (limits.ratePerSecond, burst ${l.burst}; a request costs a token per started 64 KiB)`)));
      return this.refuse(hv, { id: sniffId(payload) }, e);
    }
    const d = decodeRequest(payload, this.settings.maxPayload);
    if (!d.ok) {
      this.refused(hv, d.error.code, `request from ${hv} refused: ${d.error.code}: ${d.error.message}`);
      return errorResponse(d.id, d.error) as Record<string, unknown>;
    }
    const req = d.req;
    if (seen) seen.op = req.op;
    const port = this.hvPort.get(hv);
    if (!port) {
      this.refused(hv, "not-authorized", `authorization: ${hv} refused (${req.op}): not listed in any port's hypervisors`);
      return errorResponse(req.id, new ProtocolError("not-authorized", `${hv} is not a hypervisor of NVE ${this.settings.nve}`)) as Record<string, unknown>;
    }
    if (req.op === "hello") {
      this.log(`authorization: ${hv} accepted on port ${port}`);
      this.helloQueued.set(hv, (this.helloQueued.get(hv) ?? 0) + 1);
    } else if (!this.sessions.has(hv) && !this.helloQueued.get(hv)) {
      return this.refuse(hv, req, helloRequired(hv));
    }
    return new Admitted(req, port);
  }

  /**
   * The open syncs, finished answers and discarded ids of these {hv}s, to put
   * back if their group fails. Chunks are only appended, so an open sync is put
   * back by dropping the chunks taken since (no copy of what it holds).
   */
  private saveSyncs(hvs: Set<string>): () => void {
    const st = this.syncs;
    const saved = [...hvs].map((hv) => {
      const o = st.open.get(hv);
      return { hv, open: o, chunks: o?.chunks.length ?? 0, at: o?.at ?? 0, finished: st.finished.get(hv), discarded: st.discarded.get(hv) };
    });
    return () => {
      for (const x of saved) {
        if (x.open) {
          for (const c of x.open.chunks.splice(x.chunks)) for (const id of c.added) x.open.vnicIds.delete(id);
          x.open.at = x.at;
          st.open.set(x.hv, x.open);
        } else st.open.delete(x.hv);
        x.finished ? st.finished.set(x.hv, x.finished) : st.finished.delete(x.hv);
        x.discarded ? st.discarded.set(x.hv, x.discarded) : st.discarded.delete(x.hv);
      }
    };
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
    for (const b of batch) if (b.req.op === "hello") this.helloQueued.set(b.hv, (this.helloQueued.get(b.hv) ?? 1) - 1);
    if (this.closed) {
      for (const b of batch) b.resolve(errorResponse(b.req.id, new ProtocolError("internal", "the NVE is shutting down")) as Record<string, unknown>);
      return;
    }
    await this.runGroup(batch, true);
  }

  /** A queued request's answer (RequestJob.settle); a stopped NVE answers nothing (issue 10 item 8). */
  settleRequest(b: RequestJob, o: Outcome): void {
    if (this.fatal) return;
    if (o.ok) b.resolve(okAnswer(b.req.id, o.value as Record<string, unknown>));
    else b.resolve(o.refused ? errorResponse(b.req.id, o.error as ProtocolError) as Record<string, unknown> : this.failure(b.hv, b.req, o.error));
  }

  /**
   * The group commit shared by requests (processBatch) and the NVE's own
   * changes (transact, a group of one): each job is built in order on its own
   * Txn, seeing the ones before it (committed to the model at once), then the
   * group is stored and programmed (commitGroup). A job that is a request is
   * refused without hello, and hello opens its session. If the store or the
   * data plane refuses, the model and the syncs are put back and, for a
   * group of several, the jobs run again one by one so only the faulty one
   * fails. Logs and timers follow at once; the IMA, the events and the
   * answers (settle) once the group is durable (PROTOCOL.md §2).
   */
  private async runGroup(batch: Job[], pipelined: boolean): Promise<void> {
    // The sets and the syncs' saved state only when a job needs them (a group of one attach, paced, needs none).
    let syncHvs: Set<string> | undefined;
    for (const b of batch) if (b.req?.op === "sync") (syncHvs ??= new Set()).add(b.hv);
    const restoreSyncs = syncHvs ? this.saveSyncs(syncHvs) : undefined;
    const now = this.clock.now();
    const results: Outcome[] = [];
    const done: Txn[] = [];
    const imaKeys = this.ima ? new Set<string>() : undefined;
    let opened: Set<string> | undefined;
    for (const b of batch) {
      // hello comes first on every session (PROTOCOL.md §2 Authority)
      if (b.req && b.req.op !== "hello" && !this.sessions.has(b.hv)) {
        results.push({ ok: false, error: helloRequired(b.hv) });
        continue;
      }
      const tx = new Txn(this.model, now, this.settings.tagQuarantineMs, this.guard, this.catalog);
      const ctx = this.ctxFor(b.hv, b.port, tx);
      try {
        const reply = b.run(ctx);
        const f = tx.finish();
        if (imaKeys) for (const k of bindingKeys(tx.vnicChanges, this.model.vnics)) imaKeys.add(k);
        f.commit();
        done.push(tx);
        results.push({ ok: true, value: reply() });
        if (b.req?.op === "hello" && !this.sessions.has(b.hv)) {
          this.sessions.add(b.hv);
          (opened ??= new Set()).add(b.hv);
        }
      } catch (e) {
        results.push({ ok: false, error: e });
      }
    }
    if (this.syncs.open.size) this.armSyncSweep();
    let durable: Promise<void> | undefined;
    try {
      ({ durable } = await this.commitGroup(done, pipelined));
    } catch (e) {
      restoreSyncs?.();
      if (opened) for (const hv of opened) this.sessions.delete(hv);
      // the store failed: the group is undone in the model and no request is answered
      if (this.fatal) {
        const err = e instanceof StoreFailure ? e : new StoreFailure((e as Error).message);
        for (const b of batch) b.settle({ ok: false, error: err });
        return;
      }
      if (batch.length === 1) {
        this.log(`data plane or store refused ${done.reduce((n, f) => n + f.ops.length, 0)} ops: ${(e as Error).message}`);
        const err = tableFull(e)
          ? new ProtocolError("limit-exceeded", `a table of the data plane is full: ${(e as Error).message}`)
          : new ProtocolError("internal", `the change could not be stored or programmed: ${(e as Error).message}`);
        batch[0].settle({ ok: false, error: err, refused: true });
        return;
      }
      // one by one, so only the job at fault fails
      for (const b of batch) {
        await this.runGroup([b], false);
        if (this.fatal) return;
      }
      return;
    }
    for (const tx of done) for (const l of tx.logs) this.log(l);
    if (done.some((tx) => tx.timerChanges.size)) this.armTimer();
    // The IMA hears of a change, and the End Devices of its answer and events, only once it is on disk.
    const answer = () => {
      if (this.fatal) {
        for (const b of batch) b.settle({ ok: false, error: new StoreFailure(this.fatal.message) });
        return;
      }
      this.toIma(imaKeys);
      for (const tx of done) for (const ev of tx.events) this.onEvent(ev.hv, ev.event);
      batch.forEach((b, i) => b.settle(results[i]));
    };
    if (!durable) return answer();
    durable.then(answer, (e) => { this.die(e as Error); answer(); });
  }

  /** Runs a store write; a failure stops the NVE (die) and is rethrown as a StoreFailure. */
  private async stored<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (e) {
      throw this.storeFailed(e);
    }
  }

  /** A store write failed: the NVE stops answering (die, below); the error its caller throws. */
  private storeFailed(e: unknown): StoreFailure {
    this.die(e as Error);
    return new StoreFailure((e as Error).message);
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
    if (e instanceof ProtocolError) return this.refuse(hv, req, e);
    this.log(`request ${req.id} (${req.op}) from ${hv}: internal error: ${(e as Error).stack ?? e}`);
    return errorResponse(req.id, new ProtocolError("internal", (e as Error).message)) as Record<string, unknown>;
  }

  /**
   * Unfinished syncs are dropped holdMs after their last chunk (PROTOCOL.md §2
   * Authority), on the monotonic clock: one in-process timer while any is open.
   */
  private armSyncSweep(): void {
    if (this.syncSweep !== undefined || this.closed) return;
    const hold = syncHoldMs(this.settings);
    this.syncSweep = this.clock.setTimer(() => {
      this.syncSweep = undefined;
      const now = monoOf(this.clock);
      for (const [hv, o] of [...this.syncs.open]) {
        if (now - o.at < hold) continue;
        discard(this.syncs, hv, o.syncId);
        this.refused(hv, "sync-discarded", `sync ${o.syncId} of ${hv}: no final chunk within ${hold} ms, ${o.chunks.length} chunks discarded`);
      }
      if (this.syncs.open.size) this.armSyncSweep();
    }, hold);
  }

  /**
   * An agent's retained status (PROTOCOL.md §3): a will starts the agentHoldMs
   * timer. Acted on only when it changes, and debounced (issue 10 item 4): a
   * few changes at once per {hv}, then at most one per STATUS_DEBOUNCE_MS, the
   * latest state winning, so flaps cannot fill everyone's queue with durable
   * transactions. An offline status ends the {hv}'s session at once: its next
   * request must be hello (PROTOCOL.md §2 Authority).
   */
  agentStatus(hv: string, online: boolean): Promise<void> {
    const port = this.hvPort.get(hv);
    if (!port) return Promise.resolve();
    if (!online) this.sessions.delete(hv);
    const now = monoOf(this.clock);
    let st = this.status.get(hv);
    if (st?.seen === online) return Promise.resolve();
    if (!st) this.status.set(hv, (st = { seen: online, tokens: STATUS_BURST, at: now }));
    st.seen = online;
    st.tokens = Math.min(STATUS_BURST, st.tokens + (now - st.at) / STATUS_DEBOUNCE_MS);
    st.at = now;
    if (st.timer !== undefined) return Promise.resolve(); // a trailing change is due: it takes the latest state
    if (st.tokens >= 1) {
      st.tokens -= 1;
      return this.applyStatus(hv, port);
    }
    const s = st;
    s.timer = this.clock.setTimer(() => {
      s.timer = undefined;
      s.tokens = 0;
      s.at = monoOf(this.clock);
      void this.applyStatus(hv, port);
    }, STATUS_DEBOUNCE_MS * (1 - st.tokens));
    return Promise.resolve();
  }

  private applyStatus(hv: string, port: string): Promise<void> {
    const online = this.status.get(hv)!.seen;
    const prev = this.model.hvs.get(hv);
    if (online && prev?.online && !this.model.timers.has(`agent-hold|${hv}`)) return Promise.resolve();
    if (!online && prev?.online === false) return Promise.resolve(); // already counting (or held forever)
    return this.enqueue(() => this.transact(hv, port, (ctx) => {
      const prev = this.model.hvs.get(hv);
      if (online) {
        if (!prev?.online) ctx.tx.putHv({ hv, online: true, since: ctx.now });
        ctx.tx.clearTimer("agent-hold", hv);
        if (!prev?.online) ctx.tx.log(`agent ${hv}: online`);
        return;
      }
      if (prev?.online === false) return;
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

  /** vnic.remove (Req-6): handlers/operator/remove-vnic.ts. */
  removeVnic(vnic: string, reason = "operator"): Promise<void> {
    return this.ownerTxn(vnic, (ctx) => opRemoveVnic(ctx, vnic, reason));
  }

  /** vn.disconnect (Req-6): handlers/operator/disconnect-vnic.ts. */
  disconnectVnic(vnic: string, vnRef: VnRef | number | string, reason = "operator"): Promise<void> {
    return this.ownerTxn(vnic, (ctx) => opDisconnectVnic(ctx, vnic, vnRef, reason));
  }

  /** addr.disassociate (Req-9): handlers/operator/disassociate.ts. */
  disassociate(vnic: string, vnRef: VnRef | number | string, addrs: Addr[], reason = "operator"): Promise<void> {
    return this.ownerTxn(vnic, (ctx) => opDisassociate(ctx, vnic, vnRef, addrs, reason));
  }

  /** vn.remove: handlers/operator/remove-vn.ts; the VN leaves the catalog with the change. */
  removeVn(vnRef: VnRef | number | string, reason = "vn-removed"): Promise<number> {
    return this.enqueue(() => this.transact(NVE_HV, "", (ctx) => opRemoveVn(ctx, this.catalog.resolve(vnRef).id, reason)));
  }

  /** A VN's profile changes (seed §4.5): handlers/operator/set-profile.ts, one change through the queue. */
  setProfile(vnRef: VnRef | number | string, profile: VnProfile): Promise<void> {
    return this.enqueue(() => this.transact(NVE_HV, "", (ctx) => opSetProfile(ctx, vnRef, profile)));
  }

  /** Maintenance: every End Device of this NVE gets nve.draining (handlers/operator/drain.ts). */
  drain(): string[] {
    return opDrain(this.hypervisors(), this.onEvent, this.log);
  }

  // ---------------------------------------------------------------- views (nvedge show: views.ts)

  private get viewSource(): ViewSource {
    return { model: this.model, catalog: this.catalog, config: this.o.config, clock: this.clock, portOf: (hv) => this.hvPort.get(hv),
      ima: this.ima, gleaned: this.gleaned };
  }

  /** The NVE's view of one End Device (the `show` op). */
  viewHv(hv: string): { port: string | undefined; vnics: Record<string, unknown>[] } {
    return views.viewHv(this.viewSource, hv);
  }

  bindings(): Record<string, unknown>[] {
    return views.bindings(this.viewSource);
  }

  vns(): Record<string, unknown>[] {
    return views.vns(this.viewSource);
  }

  ports(): Record<string, unknown>[] {
    return views.ports(this.viewSource);
  }

  /**
   * A reloaded configuration (host/cli/reload.ts, issue 13), in the queue like
   * any change: `ops` (the static state's diff) programmed, the catalog
   * changed, then the new file's ports, timers and limits take effect and its
   * static VNICs are reconciled the way they are at start (a sync per port as
   * CONFIG_HV: what did not change is not touched).
   */
  reconfigure(next: NveConfig, ops: DpOp[], catalogChange: (c: VnCatalog) => void, limits?: Partial<Limits>): Promise<void> {
    return this.enqueue(async () => {
      if (ops.length) await this.o.programmer.apply(ops);
      catalogChange(this.catalog);
      this.o.config = next;
      this.indexPorts(next);
      Object.assign(this.settings, {
        holdMs: next.timers?.holdMs ?? 10000, agentHoldMs: next.timers?.agentHoldMs ?? 30000,
        tagQuarantineMs: next.timers?.tagQuarantineMs ?? 5000, maxPayload: next.limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      });
      // The file's limits (issue 10) as at start, then any given by the caller.
      const { maxPayload: _mp, ...fileLimits } = next.limits ?? {} as Partial<NveConfig["limits"]>;
      this.settings.limits = { ...DEFAULT_LIMITS, ...fileLimits, ...this.o.limits, ...limits };
      this.guard.maxPrefixesPerHv = this.settings.limits.maxPrefixesPerHv;
      const stat = staticVnics(next, this.catalog);
      for (const p of next.ports)
        await this.transact(configHv(p.name), p.name, (ctx) => sync(ctx, { id: "config", op: "sync", syncId: randomUUID(), vnics: stat.get(p.name) ?? [], final: true }));
    });
  }

  /** Waits for every queued change, then refuses new ones and stops the timer. */
  async close(): Promise<void> {
    await this.queue;
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    if (this.syncSweep !== undefined) this.clock.clearTimer(this.syncSweep);
    this.syncSweep = undefined;
    for (const st of this.status.values()) if (st.timer !== undefined) this.clock.clearTimer(st.timer);
  }
}
