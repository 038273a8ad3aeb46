// Fixtures for the control-plane suites: brokers (embedded aedes, Mosquitto with
// MQTT 3.1.1 and with MQTT 5), an NVE service with a recording programmer over a
// real DataPlane, agents, raw MQTT clients, and an injectable clock.
import { execFileSync } from "node:child_process";
import mqtt, { type MqttClient } from "mqtt";
import { DataPlane } from "../../host/dataplane/dataplane.js";
import type { DataPlaneProgrammer, DpOp } from "../../host/dataplane/ops.js";
import { parseConfig } from "../../host/config/load.js";
import type { NveConfig } from "../../host/config/types.js";
import { startEmbeddedBroker } from "../../host/broker/embedded.js";
import { startMosquitto } from "./mosquitto.js";
import { startBrokerThread } from "../../host/broker/broker-thread.js";
import { NveService } from "../../host/control/service.js";
import type { Clock } from "../../host/domain/clock.js";
import type { Limits } from "../../host/control/context.js";
import { MemoryStore, newMemoryBacking, type MemoryBacking } from "../../host/store/memory.js";
import * as assert from "uvu/assert";
import { LmdbStore } from "../../host/store/lmdb.js";
import type { Store } from "../../host/store/store.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, AgentError } from "../../host/agent/agent.js";
import { topics } from "../../host/protocol/topics.js";
import { requireTool } from "./tools.js";

export const NVE = "nve-a";
export const HVS = ["hv-1", "hv-2", "hv-3", "hv-4"]; // hv-1, hv-2 on eth2 (Req-2); hv-3 on eth3; hv-4 on eth4
export const VN_BLUE = { id: 100, name: "6f1c3c52-6c0e-4c5e-9a57-0c8f2a2f6a10", alias: "blue" };
export const VN_RED = { id: 200, name: "7a2d4d63-7d1f-4d6f-8b68-1d9f3b3f7b21", alias: "red" };
export const VN_GREEN = { id: 300, alias: "green" };

export interface RunningBroker {
  name: string;
  url: string;
  protocolVersion: 4 | 5;
  creds(identity: string): { username: string; password?: string };
  close(): Promise<void>;
}
export interface BrokerFixture { name: string; start(identities: string[], nves: string[]): Promise<RunningBroker> }

export function mosquittoAvailable(): boolean {
  try {
    execFileSync("mosquitto", ["-h"], { stdio: "ignore", timeout: 5000 });
    return true;
  } catch (e) {
    return (e as { status?: number }).status !== undefined; // `-h` exits non-zero but runs
  }
}

const password = (id: string) => `pw-${id}-secret`;

/**
 * Every broker the suite must pass through: embedded, and Mosquitto (3.1.1 and
 * 5). Without Mosquitto, a strict run fails naming it (test/support/tools.ts);
 * NVEDGE_TEST_SKIP=mosquitto drops those fixtures on purpose.
 */
export function brokerFixtures(): BrokerFixture[] {
  const out: BrokerFixture[] = [{
    name: "embedded aedes (3.1.1)",
    async start(_ids, nves) {
      const b = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves });
      return { name: this.name, url: b.url, protocolVersion: 4, creds: (id) => ({ username: id }), close: () => b.close() };
    },
  }];
  if (process.env.NVEDGE_TEST_BROKER_THREAD === "1") out[0] = embeddedThreadFixture();
  // NVEDGE_TEST_MOSQUITTO_UNIX=1: every suite also through Mosquitto's Unix socket (mqtt+unix://)
  if (process.env.NVEDGE_TEST_MOSQUITTO_UNIX === "1" && requireTool("mosquitto", mosquittoAvailable, "the suites through Mosquitto's Unix socket")) out.push(mosquittoUnixFixture());
  if (requireTool("mosquitto", mosquittoAvailable, "the suites over Mosquitto (MQTT 3.1.1 and 5)"))
    for (const pv of [4, 5] as const)
      out.push({
        name: `mosquitto (MQTT ${pv === 4 ? "3.1.1" : "5"})`,
        async start(ids, nves) {
          const m = await startMosquitto({ users: Object.fromEntries(ids.map((i) => [i, password(i)])), nves });
          return { name: this.name, url: m.url, protocolVersion: pv, creds: (id) => ({ username: id, password: password(id) }), close: () => m.close() };
        },
      });
  return out;
}

/**
 * Mosquitto's Unix socket listener (`listener 0 PATH`), every client on
 * mqtt+unix:///PATH (the NVE and the lean agents on mqtt-lean.ts, MQTT.js for
 * the rest): a broker on the NVE's own host without TCP (issue 15).
 */
export function mosquittoUnixFixture(): BrokerFixture {
  return {
    name: "mosquitto over a Unix socket (MQTT 3.1.1)",
    async start(ids, nves) {
      const m = await startMosquitto({ users: Object.fromEntries(ids.map((i) => [i, password(i)])), nves, unixSocket: true });
      return { name: this.name, url: m.unixUrl!, protocolVersion: 4, creds: (id) => ({ username: id, password: password(id) }), close: () => m.close() };
    },
  };
}

/** The embedded broker as `nvedge run` starts it: on its own worker thread (host/broker/broker-thread.ts). */
export function embeddedThreadFixture(): BrokerFixture {
  return {
    name: "embedded aedes, own thread (3.1.1)",
    async start(_ids, nves) {
      const b = await startBrokerThread({ host: "127.0.0.1", port: 0, nves });
      return { name: this.name, url: b.url, protocolVersion: 4, creds: (id) => ({ username: id }), close: () => b.close() };
    },
  };
}

/** Records every batch of ops and applies it to a real DataPlane (so a bad op is refused as in production). */
export class RecordingProgrammer implements DataPlaneProgrammer {
  batches: DpOp[][] = [];
  failNext: Error | undefined;
  constructor(readonly dp: DataPlane) {}
  static async create(): Promise<RecordingProgrammer> {
    return new RecordingProgrammer(await DataPlane.create({ macLog2: 14, ipLog2: 14 }));
  }
  async apply(ops: DpOp[]): Promise<void> {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.dp.apply(ops);
    this.batches.push(ops);
  }
  mark(): number {
    return this.batches.length;
  }
  since(mark: number): DpOp[] {
    return this.batches.slice(mark).flat();
  }
}

/** A clock the test moves by hand; timers fire synchronously inside advance(). */
export class FakeClock implements Clock {
  private timers = new Map<number, { at: number; fn: () => void }>();
  private seq = 0;
  constructor(public t = 1_800_000_000_000) {}
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimer(h: unknown): void {
    this.timers.delete(h as number);
  }
  advance(ms: number): void {
    this.t += ms;
    for (const [id, tm] of [...this.timers].sort((a, b) => a[1].at - b[1].at)) {
      if (tm.at > this.t) continue;
      this.timers.delete(id);
      tm.fn();
    }
  }
}

/** NVE names the brokers accept (each test takes a fresh one so retained statuses never leak between tests). */
export const NVE_POOL = Array.from({ length: 80 }, (_, i) => `nve-t${i}`);
let nveSeq = 0;
export function nextNve(): string {
  return NVE_POOL[nveSeq++ % NVE_POOL.length];
}

export function baseConfig(over: Partial<Record<string, unknown>> = {}, nve = NVE): NveConfig {
  return parseConfig(JSON.stringify({
    nve,
    underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
    ports: [{ name: "eth2", hypervisors: ["hv-1", "hv-2"] }, { name: "eth3", hypervisors: ["hv-3"] }, { name: "eth4", hypervisors: ["hv-4"] }],
    vns: [
      { ...VN_BLUE, vni: 5000, profile: { encap: "vxlan", mtu: 1450, portSecurity: true, arpSuppress: true } },
      { ...VN_RED, vni: 6000, profile: { encap: "geneve", mtu: 1400 } },
      { ...VN_GREEN, vni: 7000, profile: { encap: "nvgre", mtu: 1458 } },
    ],
    remotes: [{ nve: "nve-b", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: "02:00:5e:00:0b:01", ips: ["10.0.0.200"] }] }],
    timers: { holdMs: 10000, agentHoldMs: 30000, tagQuarantineMs: 5000 },
    ...over,
  }), "test-config.json");
}

/** Where an NVE's state lives: an in-memory backing, or an LMDB directory (the production store). */
export type StoreKind = "memory" | "lmdb";
export type Backing = MemoryBacking | { lmdbDir: string };

export interface RunningNve {
  svc: NveService;
  prog: RecordingProgrammer;
  clock: FakeClock;
  /** Pass it to the next startNve to "restart" on the same state. */
  backing: Backing;
  /** The store the NVE runs on (the wrapped one when `wrap` was given). */
  store: Store;
  logs: string[];
  stop(): Promise<void>;
}

// LMDB stores open in this process, by directory: a restart on the same backing closes the old one first
// (an LMDB directory is held by one store at a time, host/store/lmdb-lock.ts).
const openLmdb = new Map<string, Store>();
const tempDirs = new Set<string>();
process.on("exit", () => { for (const d of tempDirs) rmSync(d, { recursive: true, force: true }); });

/** Opens the store of a backing (a fresh one of `kind` when none is given). */
export async function openStore(kind: StoreKind, backing?: Backing): Promise<{ store: Store; backing: Backing }> {
  if (kind === "memory" || (backing && !("lmdbDir" in backing))) {
    const b = (backing as MemoryBacking | undefined) ?? newMemoryBacking();
    return { store: await MemoryStore.open({ backing: b }), backing: b };
  }
  let dir = (backing as { lmdbDir: string } | undefined)?.lmdbDir;
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), "nvl-store-"));
    tempDirs.add(dir);
  }
  await openLmdb.get(dir)?.close().catch(() => {});
  const store = await LmdbStore.open(dir);
  openLmdb.set(dir, store);
  return { store, backing: { lmdbDir: dir } };
}

export async function startNve(b: RunningBroker, o: {
  config?: NveConfig; backing?: Backing; store?: StoreKind; clock?: FakeClock; limits?: Partial<Limits>; prog?: RecordingProgrammer;
  /** Wraps the store the NVE gets (failure injection: test/support/faulty-store.ts). */
  wrap?: (s: Store) => Store;
  /** The core's store-failure stop (default here: recorded in `logs` only, the test process lives on). */
  onFatal?: (e: Error) => void;
} = {}): Promise<RunningNve> {
  const opened = await openStore(o.store ?? "memory", o.backing);
  const store = o.wrap ? o.wrap(opened.store) : opened.store;
  const prog = o.prog ?? await RecordingProgrammer.create();
  const clock = o.clock ?? new FakeClock();
  const logs: string[] = [];
  const config = o.config ?? baseConfig();
  const svc = await NveService.start({
    config, store, programmer: prog, clock, limits: o.limits, log: (l) => logs.push(l), onFatal: o.onFatal ?? (() => {}),
    broker: { url: b.url, protocolVersion: b.protocolVersion, ...b.creds(config.nve), reconnectPeriodMs: 200 },
  });
  const backing = opened.backing;
  return {
    svc, prog, clock, backing, store, logs,
    async stop() {
      await svc.stop();
      if ("lmdbDir" in backing) {
        await opened.store.close();
        openLmdb.delete(backing.lmdbDir);
        if (tempDirs.delete(backing.lmdbDir)) rmSync(backing.lmdbDir, { recursive: true, force: true });
      }
    },
  };
}

export async function startAgent(b: RunningBroker, hv: string, o: { statePath?: string; nve?: string; requestTimeoutMs?: number; retries?: number; log?: (l: string) => void; mqttClient?: "mqttjs" | "lean" } = {}): Promise<Agent> {
  return Agent.start({ broker: { url: b.url, protocolVersion: b.protocolVersion, ...b.creds(hv), reconnectPeriodMs: 200 }, hv, nve: o.nve ?? NVE, statePath: o.statePath,
    requestTimeoutMs: o.requestTimeoutMs ?? 5000, retries: o.retries, log: o.log, mqttClient: o.mqttClient });
}

/** A bare MQTT client acting as {identity}: sends raw payloads and collects what arrives on its rsp/evt topics. */
export async function rawClient(b: RunningBroker, identity: string, nve = NVE) {
  const c: MqttClient = await mqtt.connectAsync(b.url, { protocolVersion: b.protocolVersion, ...b.creds(identity), clientId: `${identity}-raw-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 0 });
  const got: { topic: string; msg: any }[] = [];
  const waiters: { pred: (m: any) => boolean; resolve: (m: any) => void }[] = [];
  c.on("message", (topic, payload) => {
    let msg: any;
    try { msg = JSON.parse(payload.toString()); } catch { msg = payload.toString(); }
    got.push({ topic, msg });
    for (const w of [...waiters]) if (w.pred(msg)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(msg); }
  });
  await c.subscribeAsync([topics.rsp(identity), topics.evt(identity)], { qos: 1 });
  const waitFor = (pred: (m: any) => boolean, ms = 5000) => new Promise<any>((resolve, reject) => {
    const hit = got.find((g) => pred(g.msg));
    if (hit) return resolve(hit.msg);
    const t = setTimeout(() => reject(new Error(`no matching message within ${ms} ms`)), ms);
    waiters.push({ pred, resolve: (m) => { clearTimeout(t); resolve(m); } });
  });
  return {
    client: c,
    got,
    /** publishes raw bytes as a request of {asHv} (default: itself) and waits for the response with `id` (null for id-less). */
    async send(payload: string | Buffer, id: string | null, asHv = identity, ms = 5000) {
      const seen = got.length;
      await c.publishAsync(topics.req(nve, asHv), Buffer.isBuffer(payload) ? payload : Buffer.from(payload), { qos: 1 });
      return waitFor((m) => m && m.id === id && got.indexOf(got.find((g) => g.msg === m)!) >= seen, ms);
    },
    request(op: string, fields: Record<string, unknown> = {}, id = `r-${Math.random().toString(36).slice(2, 10)}`) {
      return this.send(JSON.stringify({ id, op, ...fields }), id);
    },
    waitFor,
    close: () => c.endAsync(true),
  };
}

export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** A free TCP port on 127.0.0.1 (the one mosquitto.ts picks its ports with). */
export { freePort } from "./mosquitto.js";

/** Runs `nvedge ARGS` as a child process; the caller must stop it (stop() waits for the exit, SIGKILL after 5 s). */
export async function spawnNvedge(args: string[], env: Record<string, string> = {}) {
  const { spawn } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const bin = fileURLToPath(new URL("../../../bin/nvedge.js", import.meta.url));
  const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let out = "", err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.once("exit", (code, sig) => r(code ?? (sig ? 128 : null))));
  return {
    child, exited,
    out: () => out, err: () => err,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** Runs `nvedge ARGS` to completion (bounded by `ms`). */
export async function runNvedge(args: string[], ms = 20_000): Promise<{ code: number | null; out: string; err: string }> {
  const p = await spawnNvedge(args);
  const t = setTimeout(() => p.child.kill("SIGKILL"), ms);
  const code = await p.exited;
  clearTimeout(t);
  return { code, out: p.out(), err: p.err() };
}

/** Expects `p` to fail with an AgentError of `code` (and `field`); returns it. */
export async function rejects(p: Promise<unknown>, code: string, field?: string): Promise<AgentError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, AgentError);
    assert.is((e as AgentError).code, code, (e as Error).message);
    if (field !== undefined) assert.is((e as AgentError).field, field);
    return e as AgentError;
  }
  throw new assert.Assertion({ message: `expected error ${code}, got success`, operator: "rejects", expects: code, actual: "ok", generated: false });
}

/** One test's NVE, agents and raw clients on a running broker; close() stops them all. */
export class ControlEnv {
  readonly nve = nextNve();
  run!: RunningNve;
  agents: Agent[] = [];
  raws: { close(): Promise<unknown> }[] = [];
  constructor(readonly b: RunningBroker, readonly storeKind: StoreKind = "memory") {}
  async start(o: { over?: Record<string, unknown>; limits?: Partial<Limits>; backing?: RunningNve["backing"]; config?: NveConfig } = {}) {
    this.run = await startNve(this.b, { config: o.config ?? baseConfig(o.over, this.nve), limits: o.limits, backing: o.backing, store: this.storeKind });
    return this.run;
  }
  get core() {
    return this.run.svc.core;
  }
  get prog() {
    return this.run.prog;
  }
  async agent(hv: string, statePath?: string) {
    const a = await startAgent(this.b, hv, { nve: this.nve, statePath });
    this.agents.push(a);
    return a;
  }
  async raw(hv: string) {
    const r = await rawClient(this.b, hv, this.nve);
    this.raws.push(r);
    return r;
  }
  /** Everything the NVE can tell about its state (compared before/after a refused request). */
  snapshot() {
    return JSON.stringify([this.core.bindings(), this.core.vns(), this.core.ports(), HVS.map((h) => this.core.viewHv(h))]);
  }
  async close() {
    for (const a of this.agents) await a.stop().catch(() => {});
    for (const r of this.raws) await r.close().catch(() => {});
    await this.run?.stop().catch(() => {});
  }
}
