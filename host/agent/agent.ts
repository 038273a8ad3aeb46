// The hypervisor-side agent library (PROTOCOL.md §1–§4): a hypervisor
// integration calls attach/detach/associate/activate/deactivate/migrate-out/
// migrate-in; the agent keeps the desired state (optionally in a file), and
// after any reconnect or a new NVE bootId it sends `hello` then `sync` so the
// NVE's state equals it again (§3). NVE-initiated events (§4) update the
// desired state and are re-emitted as "event".
//
// The port driver (driver.ts, e.g. Open vSwitch) puts the tag the NVE returned
// on the VM's bridge port (RFC 8394 Req-7): after attach/connect, and after
// every sync for any port whose tag differs from what was last set (a failed
// set is retried there); a port whose binding went away (detach, shutdown or
// migration deactivate, an NVE-initiated `vn.disconnected`) is cleared.
import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { readFileSync, writeFileSync, renameSync, existsSync } from "node:fs";
import mqtt from "mqtt";
import { LEAN_SCHEMES, LeanMqttClient, type MqttLike } from "../protocol/mqtt-lean.js";
import { encode, publishOptions } from "../protocol/codec.js";
import { topics } from "../protocol/topics.js";
import { eventValidators, validateNveStatus, validateResponse } from "../protocol/schemas.js";
import { ERROR_CODES, type ErrorCode } from "../protocol/errors.js";
import { normIp, normMac } from "../domain/addr-text.js";
import type { Addr, ConnectResult, DeactivateReason, Event, HelloResult, VnFull, VnRef } from "../protocol/types.js";
import { mqttClientOptions, retryableConnectError, tcpNoDelay, type BrokerConnection } from "../protocol/mqtt.js";
import { PORT_NAME_RE, driverMessage, noPortDriver, type PortDriver } from "./driver.js";

export class AgentError extends Error {
  constructor(public code: ErrorCode | "timeout" | "closed" | "driver", message: string, public field?: string) {
    super(`${code}: ${message}${field ? ` (${field})` : ""}`);
  }
}

/** `port`: the VM's bridge port (OVS port name) that carries this VN's tag, when the agent drives one. */
export interface DesiredVn { vn: VnFull | VnRef; tag?: number; port?: string; addrs: { mac: string; ips: string[] }[] }
export interface DesiredVnic { vnic: string; state: "active" | "associated"; vns: DesiredVn[] }

export interface AgentOptions {
  broker: BrokerConnection;
  hv: string;
  nve: string;
  /** JSON file keeping the desired state across agent restarts */
  statePath?: string;
  /** per attempt (default 10 s) */
  requestTimeoutMs?: number;
  /** attempts after the first (default 2) */
  retries?: number;
  agentName?: string;
  log?: (line: string) => void;
  /** puts the NVE's tags on the VMs' bridge ports (default: none) */
  driver?: PortDriver;
  /**
   * The MQTT client: the NVE's own (`lean`, host/protocol/mqtt-lean.ts, the
   * default for mqtt://, mqtts:// and mqtt+unix://: the same session as
   * MQTT.js, a fraction of its CPU per request: issue 15, a hypervisor's
   * agent runs beside its VMs), or MQTT.js (`mqttjs`, and always for ws://
   * and wss://). Unset, NVEDGE_MQTT_CLIENT=mqttjs picks MQTT.js, as for the NVE.
   */
  mqttClient?: "mqttjs" | "lean";
}

const sameVn = (a: VnFull | VnRef, b: VnFull | VnRef) => {
  const x = a as Partial<VnFull>, y = b as Partial<VnFull>;
  return (x.id !== undefined && x.id === y.id) || (x.name !== undefined && x.name === y.name) || (x.alias !== undefined && x.alias === y.alias);
};

function mergeAddrs(into: { mac: string; ips: string[] }[], addrs: Addr[]): void {
  for (const a of addrs) {
    const mac = normMac(a.mac);
    let e = into.find((x) => x.mac === mac);
    if (!e) into.push((e = { mac, ips: [] }));
    for (const ip of a.ips ?? []) {
      const n = normIp(ip);
      for (const o of into) if (o !== e) o.ips = o.ips.filter((x) => x !== n);
      if (!e.ips.includes(n)) e.ips.push(n);
    }
  }
}

/** Ops that change nothing at the NVE (PROTOCOL.md §2): a late answer to one needs no sync. */
const READ_ONLY_OPS = new Set(["hello", "show", "vn.profile"]);
/** Timed-out ids remembered for their late answer (bounded: any one of them triggers the sync that covers all). */
const MAX_TIMED_OUT = 1024;

const portsOf = (vns: DesiredVn[]): string[] => vns.map((b) => b.port).filter((p): p is string => !!p);

/** A wire VN reference names exactly one of id, name, alias (PROTOCOL.md §2). */
function minimalRef(v: VnFull | VnRef): VnRef {
  const x = v as Partial<VnFull>;
  return x.id !== undefined ? { id: x.id } : x.name !== undefined ? { name: x.name } : { alias: x.alias! };
}

export class Agent extends EventEmitter {
  readonly desired = new Map<string, DesiredVnic>();
  helloResult?: HelloResult;
  /** bootId of the NVE as last seen (hello or its retained status) */
  nveBootId?: string;
  private pending = new Map<string, { resolve(v: Record<string, unknown>): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  private seq = 0;
  /**
   * Ids of changing requests that timed out (the caller was told "timeout"),
   * with their op. The NVE may still apply one later (it was stopped, or slow):
   * its late answer is the sign, and the agent then syncs its desired state so
   * the NVE holds nothing the caller was told had failed (PROTOCOL.md §3).
   */
  private readonly timedOut = new Map<string, string>();
  private resyncing: Promise<void> | undefined;
  private resyncAgain = false;
  private closed = false;
  private readonly log: (l: string) => void;
  private readonly pv: number;
  syncs = 0;
  readonly driver: PortDriver;
  /** port → the tag last set on it ("unknown": a set failed or not yet re-asserted since a restart); absent = cleared */
  private readonly driven = new Map<string, number | "unknown">();
  private driveChain: Promise<unknown> = Promise.resolve();
  /**
   * The topics and publish options of every request and answer, made once
   * (issue 15: a hypervisor's agent, and the control bench's 100, paid a
   * string concatenation per topic and an options object per request).
   */
  private readonly reqTopic: string;
  private readonly rspTopic: string;
  private readonly evtTopic: string;
  private readonly nveStatusTopic: string;
  private readonly reqOpts: ReturnType<typeof publishOptions>;

  private constructor(readonly o: AgentOptions, readonly client: MqttLike) {
    super();
    this.log = o.log ?? (() => {});
    this.pv = o.broker.protocolVersion ?? 4;
    this.driver = o.driver ?? noPortDriver;
    this.reqTopic = topics.req(o.nve, o.hv);
    this.rspTopic = topics.rsp(o.hv);
    this.evtTopic = topics.evt(o.hv);
    this.nveStatusTopic = topics.nveStatus(o.nve);
    this.reqOpts = publishOptions(this.pv);
  }

  /** Connects, announces itself (retained online + will), then hello + sync. */
  static async start(o: AgentOptions): Promise<Agent> {
    const opts = mqttClientOptions({ username: o.hv, ...o.broker }, `${o.hv}-agent-${randomUUID().slice(0, 8)}`,
      { will: { topic: topics.hvStatus(o.nve, o.hv), payload: JSON.stringify({ state: "offline" }) } });
    // the lean client connects as it is made: its events come from the socket, after the listeners below are on
    const lean = (o.mqttClient ?? (process.env.NVEDGE_MQTT_CLIENT === "mqttjs" ? "mqttjs" : "lean")) === "lean" && LEAN_SCHEMES.test(o.broker.url);
    const client: MqttLike & { once(ev: "connect", l: () => void): unknown } = lean ? new LeanMqttClient(o.broker.url, opts) : mqtt.connect(o.broker.url, { ...opts, manualConnect: true });
    const a = new Agent(o, client);
    a.loadState();
    client.on("message", (topic, payload) => a.onMessage(topic, payload));
    client.on("error", (e) => a.log(`mqtt: ${e.message}`));
    let first = true;
    if (!lean) tcpNoDelay(client as mqtt.MqttClient);
    const connected = new Promise<void>((resolve, reject) => {
      // a broker not up yet is waited for (retried every reconnectPeriod), anything else fails start
      const onError = (e: Error) => {
        if (!first) return;
        if (retryableConnectError(e) && o.broker.reconnectPeriodMs !== 0) return;
        client.off("error", onError);
        reject(e);
      };
      client.on("error", onError);
      client.on("connect", () => {
        void a.onConnect(first).then(first ? resolve : undefined, first ? reject : undefined);
        first = false;
      });
    });
    if (!lean) (client as mqtt.MqttClient).connect();
    await connected;
    return a;
  }

  private async onConnect(first: boolean): Promise<void> {
    if (!first) this.log("mqtt: reconnected: hello + sync");
    const granted = await this.client.subscribeAsync([topics.rsp(this.o.hv), topics.evt(this.o.hv), topics.nveStatus(this.o.nve)], { qos: 1 });
    for (const g of granted) if (g.qos === 128) throw new AgentError("not-authorized", `the broker refused the subscription ${g.topic}`);
    await this.client.publishAsync(topics.hvStatus(this.o.nve, this.o.hv), encode({ state: "online" }), publishOptions(this.pv, true));
    await this.resync().catch((e) => {
      if (first) throw e;
      this.log(`resync after reconnect failed: ${(e as Error).message}`);
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(payload.toString("utf8"));
    } catch {
      return this.log(`${topic}: not JSON, ignored`);
    }
    if (topic === this.rspTopic) {
      if (!validateResponse(msg)) return this.log(`response not in the protocol's shape, ignored`);
      const p = typeof msg.id === "string" ? this.pending.get(msg.id) : undefined;
      if (!p) return this.lateAnswer(msg.id);
      this.pending.delete(msg.id as string);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg);
      else {
        const e = msg.error as { code: string; message: string; field?: string };
        p.reject(new AgentError((ERROR_CODES as readonly string[]).includes(e.code) ? e.code as ErrorCode : "internal", e.message, e.field));
      }
    } else if (topic === this.evtTopic) {
      const v = eventValidators[msg.event as string];
      if (!v || !v(msg)) return this.log(`event not in the protocol's shape, ignored: ${payload.toString().slice(0, 200)}`);
      this.applyEvent(msg as unknown as Event);
      this.emit("event", msg);
    } else if (topic === this.nveStatusTopic) {
      if (payload.length === 0 || !validateNveStatus(msg)) return;
      this.emit("nve-status", msg);
      if (msg.state === "online" && typeof msg.bootId === "string" && this.nveBootId !== undefined && msg.bootId !== this.nveBootId) {
        this.log(`NVE ${this.o.nve} restarted (bootId ${msg.bootId}): hello + sync`);
        this.nveBootId = msg.bootId;
        this.resync().catch((e) => this.log(`resync after NVE restart failed: ${(e as Error).message}`));
      }
    }
  }

  /**
   * An answer to a request that is no longer pending: a retry's duplicate
   * (ignored), or the answer to a changing request that timed out. Whatever it
   * says, the caller was told the request failed and the desired state does
   * not hold it, so hello + sync make the NVE's state equal to the desired state
   * again (PROTOCOL.md §3); the NVE answering again is the moment to do it.
   */
  private lateAnswer(id: unknown): void {
    const op = typeof id === "string" ? this.timedOut.get(id) : undefined;
    if (op === undefined || this.closed) return;
    this.timedOut.clear(); // the sync covers every request that timed out before it
    this.log(`late answer to ${op} ${id as string}, which timed out: hello + sync so the NVE holds exactly the desired state`);
    this.resync().catch((e) => this.log(`resync after a late answer failed: ${(e as Error).message}`));
  }

  /** NVE-initiated changes (Req-6, Req-9): the desired state follows them. */
  private applyEvent(ev: Event): void {
    if (ev.event === "vn.disconnected") {
      const d = this.desired.get(ev.vnic);
      if (d) {
        const gone = d.vns.filter((b) => sameVn(b.vn, ev.vn));
        d.vns = d.vns.filter((b) => !sameVn(b.vn, ev.vn));
        if (d.vns.length === 0) this.desired.delete(ev.vnic);
        this.saveState();
        void this.driveTags(portsOf(gone)); // failures are logged and emitted; the next sync retries
      }
    } else if (ev.event === "addr.disassociated") {
      const b = this.desired.get(ev.vnic)?.vns.find((x) => sameVn(x.vn, ev.vn));
      if (b) {
        for (const a of ev.addrs) {
          const e = b.addrs.find((x) => x.mac === a.mac);
          if (!e) continue;
          if (!a.ips?.length) b.addrs = b.addrs.filter((x) => x !== e);
          else e.ips = e.ips.filter((ip) => !a.ips!.includes(ip));
        }
        this.saveState();
      }
    }
    this.log(`event from NVE: ${JSON.stringify(ev)}`);
  }

  /**
   * One request/response exchange (PROTOCOL.md §2). Rejects with AgentError
   * carrying the error code. A request unanswered within `timeoutMs` is sent
   * again with the same id (`retries` times): every op is idempotent (§2), and a
   * loaded broker may drop QoS 1 messages beyond its queue limits.
   */
  request(op: string, fields: Record<string, unknown> = {}, timeoutMs = this.o.requestTimeoutMs ?? 10_000, retries = this.o.retries ?? 2): Promise<Record<string, unknown>> {
    if (op === "hello" || op === "sync") return this.requestOnce(op, fields, timeoutMs, retries);
    // A resync under way took its snapshot of the desired state at hello's
    // answer: a change sent now would reach the NVE before that sync, which
    // would undo it. It waits for the sync, which it then follows (§3).
    const once = async () => {
      while (this.resyncing) await this.resyncing.catch(() => {});
      return this.requestOnce(op, fields, timeoutMs, retries);
    };
    // The NVE lost this session (it restarted, or saw this agent's will):
    // hello + sync, then the request once more (PROTOCOL.md §2 Authority).
    // Without a resync under way the request goes at once, without once()'s frame (the common case).
    return (this.resyncing ? once() : this.requestOnce(op, fields, timeoutMs, retries)).catch(async (e) => {
      if (!(e instanceof AgentError) || e.code !== "hello-required" || this.closed) throw e;
      this.log(`${op}: the NVE asks for hello first: hello + sync, then ${op} again`);
      await this.resync();
      return once();
    });
  }

  private requestOnce(op: string, fields: Record<string, unknown>, timeoutMs: number, retries: number): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(new AgentError("closed", "the agent is stopped"));
    const id = `${this.o.hv.slice(0, 40)}-${++this.seq}`;
    // the JSON text itself: both clients write a string payload's UTF-8 into the packet (the lean one with no Buffer of its own)
    const payload = JSON.stringify({ id, op, ...fields });
    return new Promise((resolve, reject) => {
      let left = retries;
      const send = () => this.client.publish(this.reqTopic, payload, this.reqOpts, (e) => {
        const p = this.pending.get(id);
        if (e && p) {
          this.pending.delete(id);
          clearTimeout(p.timer);
          reject(new AgentError("internal", `publish failed: ${e.message}`));
        }
      });
      const arm = (): NodeJS.Timeout => setTimeout(() => {
        const p = this.pending.get(id);
        if (!p) return;
        if (left-- > 0 && !this.closed) {
          this.log(`no response to ${op} ${id} within ${timeoutMs} ms: sending it again`);
          p.timer = arm();
          send();
          return;
        }
        this.pending.delete(id);
        // the NVE may still apply it (a changing op): its late answer triggers a sync
        if (!READ_ONLY_OPS.has(op)) {
          this.timedOut.set(id, op);
          if (this.timedOut.size > MAX_TIMED_OUT) this.timedOut.delete(this.timedOut.keys().next().value!);
        }
        reject(new AgentError("timeout", `no response to ${op} ${id} within ${timeoutMs} ms (${retries + 1} attempts)`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer: arm() });
      send();
    });
  }

  /** hello then sync of the whole desired state (PROTOCOL.md §3). Coalesces concurrent calls. */
  resync(): Promise<void> {
    if (this.resyncing) {
      this.resyncAgain = true;
      return this.resyncing;
    }
    const run = async () => {
      do {
        this.resyncAgain = false;
        const h = (await this.request("hello", { agent: this.o.agentName ?? "nvedge-agent", capabilities: ["sync"] })) as unknown as HelloResult;
        this.helloResult = h;
        this.nveBootId = h.bootId;
        await this.syncNow(h.maxPayload);
      } while (this.resyncAgain);
    };
    this.resyncing = run().finally(() => (this.resyncing = undefined));
    return this.resyncing;
  }

  private async syncNow(maxPayload: number): Promise<void> {
    const syncId = randomUUID();
    const entries = [...this.desired.values()].map((d) => ({
      vnic: d.vnic, state: d.state,
      vns: d.vns.map((b) => ({ vn: minimalRef(b.vn), ...(b.tag !== undefined ? { tag: b.tag } : {}), addrs: b.addrs })),
    }));
    // Chunks stay well under the NVE's maxPayload (PROTOCOL.md §2 "in as many chunks as needed").
    const budget = Math.max(1024, Math.floor(maxPayload / 2));
    const chunks: typeof entries[] = [[]];
    let size = 0;
    for (const e of entries) {
      const n = JSON.stringify(e).length + 1;
      if (size + n > budget && chunks[chunks.length - 1].length) {
        chunks.push([]);
        size = 0;
      }
      chunks[chunks.length - 1].push(e);
      size += n;
    }
    let rsp: Record<string, unknown> = {};
    for (let i = 0; i < chunks.length; i++) rsp = await this.request("sync", { syncId, vnics: chunks[i], final: i === chunks.length - 1 });
    for (const t of (rsp.tags as { vn: VnFull; tag: number }[]) ?? [])
      for (const d of this.desired.values()) for (const b of d.vns) if (sameVn(b.vn, t.vn)) b.tag = t.tag;
    this.syncs++;
    this.saveState();
    // Every port whose tag differs from what the NVE holds now, and every port
    // a failed set/clear left behind (the NVE side is done: not a sync failure).
    await this.driveTags();
    this.emit("synced", rsp);
  }

  private vnEntry(vnic: string, vn: VnFull | VnRef, state: DesiredVnic["state"]): DesiredVn {
    let d = this.desired.get(vnic);
    if (!d) this.desired.set(vnic, (d = { vnic, state, vns: [] }));
    let b = d.vns.find((x) => sameVn(x.vn, vn));
    if (!b) d.vns.push((b = { vn, addrs: [] }));
    b.vn = vn;
    return b;
  }

  /**
   * A port named for (vnic, vn) must be a valid name and belong to no other
   * binding: an access port carries one tag. Checked before anything is sent,
   * so a bad port changes nothing.
   */
  private checkPort(vnic: string, vn: VnRef, port: string | undefined): void {
    if (port === undefined) return;
    if (typeof port !== "string" || !PORT_NAME_RE.test(port)) throw new AgentError("bad-request", `port ${JSON.stringify(port)}: not a valid port name`, "port");
    for (const d of this.desired.values())
      for (const b of d.vns)
        if (b.port === port && !(d.vnic === vnic && sameVn(b.vn, vn)))
          throw new AgentError("bad-request", `port "${port}" already carries VNIC ${d.vnic} in VN ${JSON.stringify(minimalRef(b.vn))}`, "port");
  }

  /**
   * After the NVE answered: the binding's port takes its tag (and a port it
   * left, `oldPort`, is cleared); a driver failure fails the call (the NVE
   * side stays, the next sync retries). Undefined when no port is involved
   * (most bindings: no driver), so that the caller awaits nothing: no
   * promise and no turn per request (issue 15).
   */
  private driveAfter(what: string, vnic: string, b: DesiredVn, oldPort: string | undefined): Promise<void> | undefined {
    if (oldPort === b.port) oldPort = undefined;
    if (!b.port && !oldPort) return undefined;
    return this.driveTags([oldPort, b.port].filter((p): p is string => !!p)).then((errors) => {
      const err = (b.port && errors.get(b.port)) || (oldPort && errors.get(oldPort));
      if (err)
        throw new AgentError("driver", `${err} (${this.driver.name}); ${what} of VNIC ${vnic} holds at the NVE with tag ${b.tag}, the agent sets the port again at the next sync`, "port");
    });
  }

  /** vnic.attach: connect + associate + activate (seed §3.1 Figure 2). `port`: the VM's bridge port, which takes the tag. */
  async attach(vnic: string, vn: VnRef, addrs: Addr[], o: { tag?: number; migration?: boolean; port?: string } = {}): Promise<ConnectResult> {
    this.checkPort(vnic, vn, o.port);
    const r = (await this.request("vnic.attach", { vnic, vn, addrs, ...(o.tag ? { tag: o.tag } : {}), ...(o.migration ? { migration: true } : {}) })) as unknown as ConnectResult;
    const b = this.vnEntry(vnic, r.vn, "active");
    const oldPort = b.port;
    b.tag = r.tag;
    if (o.port !== undefined) b.port = o.port;
    mergeAddrs(b.addrs, addrs);
    this.desired.get(vnic)!.state = "active";
    this.saveState();
    const drive = this.driveAfter("the attach", vnic, b, oldPort);
    if (drive) await drive;
    return r;
  }

  /** vn.connect (activate:false pre-associates). */
  async connect(vnic: string, vn: VnRef, o: { tag?: number; activate?: boolean; port?: string } = {}): Promise<ConnectResult> {
    this.checkPort(vnic, vn, o.port);
    const r = (await this.request("vn.connect", { vnic, vn, ...(o.tag ? { tag: o.tag } : {}), ...(o.activate === false ? { activate: false } : {}) })) as unknown as ConnectResult;
    const existed = this.desired.has(vnic);
    const b = this.vnEntry(vnic, r.vn, o.activate === false ? "associated" : "active");
    const oldPort = b.port;
    b.tag = r.tag;
    if (o.port !== undefined) b.port = o.port;
    if (o.activate !== false) this.desired.get(vnic)!.state = "active";
    else if (!existed) this.desired.get(vnic)!.state = "associated";
    this.saveState();
    const drive = this.driveAfter("the connect", vnic, b, oldPort);
    if (drive) await drive;
    return r;
  }

  /**
   * Clears the ports of bindings that went away; a failure fails the call
   * (the NVE side is done, the next sync retries). Undefined without a port,
   * as driveAfter.
   */
  private clearAfter(what: string, ports: string[]): Promise<void> | undefined {
    if (!ports.length) return undefined;
    return this.driveTags(ports).then((errors) => {
      const err = ports.map((p) => errors.get(p)).find((e) => e);
      if (err) throw new AgentError("driver", `${err} (${this.driver.name}); ${what} is done at the NVE, the agent clears the port again at the next sync`, "port");
    });
  }

  /** vn.disconnect of one VN, or of every VN (the VNIC goes back to Init). */
  async detach(vnic: string, vn?: VnRef): Promise<void> {
    let gone: DesiredVn[] = [];
    if (vn) {
      await this.request("vn.disconnect", { vnic, vn });
      const d = this.desired.get(vnic);
      if (d) {
        gone = d.vns.filter((b) => sameVn(b.vn, vn));
        d.vns = d.vns.filter((b) => !sameVn(b.vn, vn));
        if (!d.vns.length) this.desired.delete(vnic);
      }
    } else {
      await this.request("vnic.deactivate", { vnic, reason: "shutdown" });
      gone = this.desired.get(vnic)?.vns ?? [];
      this.desired.delete(vnic);
    }
    this.saveState();
    const clear = this.clearAfter(`the detach of VNIC ${vnic}`, portsOf(gone));
    if (clear) await clear;
  }

  async associate(vnic: string, vn: VnRef, addrs: Addr[]): Promise<void> {
    await this.request("addr.associate", { vnic, vn, addrs });
    const b = this.desired.get(vnic)?.vns.find((x) => sameVn(x.vn, vn));
    if (b) mergeAddrs(b.addrs, addrs);
    this.saveState();
  }

  async disassociate(vnic: string, vn: VnRef, addrs: Addr[]): Promise<void> {
    await this.request("addr.disassociate", { vnic, vn, addrs });
    const b = this.desired.get(vnic)?.vns.find((x) => sameVn(x.vn, vn));
    if (b)
      for (const a of addrs) {
        const mac = normMac(a.mac);
        if (!a.ips?.length) b.addrs = b.addrs.filter((x) => x.mac !== mac);
        else {
          const e = b.addrs.find((x) => x.mac === mac);
          if (e) e.ips = e.ips.filter((ip) => !a.ips!.map(normIp).includes(ip));
        }
      }
    this.saveState();
  }

  async activate(vnic: string, o: { migration?: boolean } = {}): Promise<void> {
    await this.request("vnic.activate", { vnic, ...(o.migration ? { migration: true } : {}) });
    const d = this.desired.get(vnic);
    if (d) d.state = "active";
    this.saveState();
  }

  /** `suspend` keeps the port's tag (Associated: the NVE holds the bindings); `shutdown` and `migration` clear it: the VM is gone from here. */
  async deactivate(vnic: string, reason: DeactivateReason): Promise<void> {
    await this.request("vnic.deactivate", { vnic, reason });
    let gone: DesiredVn[] = [];
    if (reason === "shutdown" || reason === "migration") {
      gone = this.desired.get(vnic)?.vns ?? [];
      this.desired.delete(vnic);
    } else {
      const d = this.desired.get(vnic);
      if (d) d.state = "associated";
    }
    this.saveState();
    const clear = this.clearAfter(`the deactivation (${reason}) of VNIC ${vnic}`, portsOf(gone));
    if (clear) await clear;
  }

  /** The VM leaves this hypervisor by hot migration (seed §4.4): the NVE holds its bindings for holdMs. */
  migrateOut(vnic: string): Promise<void> {
    return this.deactivate(vnic, "migration");
  }

  /** The VM arrives by hot migration (Req-13): attach each VN flagged as a migration. */
  async migrateIn(vnic: string, vns: { vn: VnRef; addrs: Addr[]; tag?: number; port?: string }[]): Promise<ConnectResult[]> {
    const out: ConnectResult[] = [];
    for (const b of vns) out.push(await this.attach(vnic, b.vn, b.addrs, { tag: b.tag, migration: true, port: b.port }));
    return out;
  }

  /**
   * The NVE's view of this hypervisor (the `show` op), every page of it: a
   * reply never exceeds maxPayload, so the NVE pages with `cursor`/`next`
   * (PROTOCOL.md §2). Bounded: at most one page per VNIC the NVE may hold.
   */
  async show(): Promise<Record<string, unknown>> {
    const { next: first, ...view } = await this.request("show");
    const vnics = [...((view.vnics as unknown[]) ?? [])];
    let next = first as string | undefined;
    for (let pages = 1; next !== undefined && pages <= 65536; pages++) {
      const page = await this.request("show", { cursor: next });
      vnics.push(...((page.vnics as unknown[]) ?? []));
      next = page.next as string | undefined;
    }
    return { ...view, vnics };
  }

  vnProfile(vn: VnRef): Promise<Record<string, unknown>> {
    return this.request("vn.profile", { vn });
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** What the driver last did per port (for `show`): a tag, "unknown" (failed or not yet re-asserted). */
  portState(): Record<string, number | "unknown"> {
    return Object.fromEntries(this.driven);
  }

  /** port → tag the desired state asks for. */
  private wantedTags(): Map<string, number> {
    const want = new Map<string, number>();
    for (const d of this.desired.values()) for (const b of d.vns) if (b.port && b.tag !== undefined) want.set(b.port, b.tag);
    return want;
  }

  /**
   * Makes the driven ports (only `ports`, or all of them) equal to the desired
   * state: set where the tag differs from the last one set, clear where no
   * binding names the port any more. Serialized (one bridge transaction at a
   * time, in call order). Returns port → one-line error for what failed; a
   * failed set leaves the port "unknown" and a failed clear keeps it listed, so
   * the next full pass (every sync) tries again.
   */
  driveTags(ports?: Iterable<string>): Promise<Map<string, string>> {
    if (!this.driver.enabled) return Promise.resolve(new Map());
    const run = async () => {
      const want = this.wantedTags();
      const todo = new Set(ports ?? [...want.keys(), ...this.driven.keys()]);
      const errors = new Map<string, string>();
      let changed = false;
      for (const port of todo) {
        const tag = want.get(port), had = this.driven.get(port);
        if (tag === had || (tag === undefined && had === undefined)) continue;
        changed = true;
        try {
          if (tag !== undefined) {
            await this.driver.setTag(port, tag);
            this.driven.set(port, tag);
            this.log(`${this.driver.name}: port ${port} tag ${tag}`);
          } else {
            await this.driver.clearTag(port);
            this.driven.delete(port);
            this.log(`${this.driver.name}: port ${port} cleared`);
          }
        } catch (e) {
          if (tag !== undefined) this.driven.set(port, "unknown");
          const message = driverMessage(port, e);
          errors.set(port, message);
          this.log(`${this.driver.name}: ${tag !== undefined ? `setting tag ${tag} on` : "clearing"} port ${port} failed: ${message}`);
          this.emit("driver-error", { port, tag, message });
        }
      }
      if (changed) this.saveState();
      return errors;
    };
    const p = this.driveChain.then(run, run);
    this.driveChain = p.catch(() => {});
    return p;
  }

  private loadState(): void {
    const p = this.o.statePath;
    if (!p || !existsSync(p)) return;
    try {
      const s = JSON.parse(readFileSync(p, "utf8")) as { vnics: DesiredVnic[]; ports?: Record<string, unknown> };
      for (const d of s.vnics) this.desired.set(d.vnic, d);
      // Whatever the last run set may have changed since: re-assert every
      // desired port and clear the others at the first sync.
      for (const port of Object.keys(s.ports ?? {})) this.driven.set(port, "unknown");
      for (const d of s.vnics) for (const port of portsOf(d.vns)) this.driven.set(port, "unknown");
    } catch (e) {
      throw new Error(`${p}: cannot read the agent's state: ${(e as Error).message}`);
    }
  }

  private saveState(): void {
    const p = this.o.statePath;
    if (!p) return;
    try {
      writeFileSync(`${p}.tmp`, JSON.stringify({ hv: this.o.hv, nve: this.o.nve, vnics: [...this.desired.values()], ports: this.portState() }, null, 1));
      renameSync(`${p}.tmp`, p); // atomic: a crash leaves the old or the new file, never half of one
    } catch (e) {
      this.log(`${p}: cannot save the desired state: ${(e as Error).message}`);
      this.emit("state-error", e);
    }
  }

  /** Graceful stop: the retained status says offline; the will covers a crash. */
  async stop(): Promise<void> {
    this.closed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new AgentError("closed", "the agent is stopped"));
    }
    this.pending.clear();
    await this.driveChain; // a bridge transaction under way finishes (each is bounded by the driver's timeout)
    if (this.client.connected)
      await this.client.publishAsync(topics.hvStatus(this.o.nve, this.o.hv), encode({ state: "offline" }), publishOptions(this.pv, true)).catch(() => {});
    await this.client.endAsync();
  }
}
