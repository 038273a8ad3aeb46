// The NVE side of nvo3-hv/1 over MQTT (PROTOCOL.md §1–§4): subscribes to its
// request topics and its agents' statuses, answers on nvo3/v1/hv/{hv}/rsp,
// sends events on …/evt, and keeps a retained status with a fresh bootId and
// a will (§3). All state logic is in core.ts.
import { connectWhenReachable as connectRetrying, mqttClientOptions, type BrokerConnection } from "../protocol/mqtt.js";
import { connectLeanWhenReachable, LEAN_SCHEMES, type MqttLike } from "../protocol/mqtt-lean.js";
import { answerText, encode, errorResponse, publishOptions } from "../protocol/codec.js";
import { compileRequestValidators } from "../protocol/schemas.js";
import { ProtocolError } from "../protocol/errors.js";
import { parseNveTopic, topics } from "../protocol/topics.js";
import { PROTOCOL_VERSION, type Event } from "../protocol/types.js";
import { NveCore, type NveCoreOptions } from "./core.js";
import { VERSION } from "../version.js";

export type { BrokerConnection } from "../protocol/mqtt.js";

/** An agent's status is `{"state":"online"}` or offline (PROTOCOL.md §1): anything larger is not one. */
const MAX_STATUS = 256;

export interface NveServiceOptions extends NveCoreOptions {
  broker: BrokerConnection;
  /** The core, already opened on these options (restored and programmed: nvedge run does it before loading MQTT). */
  core?: NveCore;
}

// Network errors while connecting at start: keep retrying (every reconnectPeriod)
// instead of failing, because the data plane already forwards from the store
// (issue 4; PROTOCOL.md §3). Anything else (e.g. a refused CONNACK) still fails start.
// The NVE's own MQTT client (host/protocol/mqtt-lean.ts, issue 15: a quarter
// of its CPU per attach was MQTT.js's) over TCP and TLS; MQTT.js over
// WebSockets (ws://, wss://), and always with NVEDGE_MQTT_CLIENT=mqttjs.
function connectWhenReachable(url: string, log: (l: string) => void, opts: Parameters<typeof connectRetrying>[2]): Promise<MqttLike> {
  const l = (x: string) => log(`${x}; forwarding continues`);
  const lean = process.env.NVEDGE_MQTT_CLIENT !== "mqttjs" && LEAN_SCHEMES.test(url);
  return lean ? connectLeanWhenReachable(url, l, opts) : connectRetrying(url, l, opts);
}

/** The op of a payload the core did not decode, for the metrics only: bounded, no JSON parse. */
function opOf(payload: Buffer): string {
  const m = /"op"\s*:\s*"([a-z.]{1,24})"/.exec(payload.subarray(0, 1024).toString("latin1"));
  return m ? m[1] : "other";
}

export class NveService {
  /** Told of every answered request (host/metrics): the op, "ok" or the error code, the seconds it took. */
  observe: ((op: string, code: string, seconds: number) => void) | undefined;

  private constructor(readonly core: NveCore, readonly client: MqttLike, private pv: number, private log: (l: string) => void) {}

  static async start(o: NveServiceOptions): Promise<NveService> {
    const log = o.log ?? (() => {});
    // §3: restore and program everything before answering anything.
    const core = o.core ?? await NveCore.open(o);
    compileRequestValidators(); // forwarding already resumed; before the first request, not on it
    const nve = o.config.nve;
    const pv = o.broker.protocolVersion ?? 4;
    const client = await connectWhenReachable(o.broker.url, log, mqttClientOptions(
      { username: nve, ...o.broker },
      `${nve}-${core.settings.bootId.slice(0, 8)}`,
      { will: { topic: topics.nveStatus(nve), payload: JSON.stringify({ state: "offline" }) } },
    ));
    const svc = new NveService(core, client, pv, log);
    // What it writes in one turn (the PUBACKs of the requests read, the
    // answers of a group commit) leaves in one write: connectWhenReachable
    // does it (host/protocol/mqtt.ts tcpNoDelay, coalesce.ts).
    core.onEvent = (hv, ev) => svc.sendEvent(hv, ev);
    client.on("message", (topic, payload, packet) => svc.onMessage(topic, payload, packet.properties?.correlationData));
    client.on("error", (e) => log(`mqtt: ${e.message}`));
    client.on("offline", () => log("mqtt: broker connection lost, reconnecting"));
    client.on("connect", () => {
      log("mqtt: reconnected");
      void svc.announce();
    });
    const granted = await client.subscribeAsync([topics.reqAll(nve), topics.hvStatusAll(nve)], { qos: 1 });
    for (const g of granted) if (g.qos >= 128) throw new Error(`the broker refused the subscription ${g.topic} for ${nve} (check its ACL)`);
    await svc.announce();
    log(`mqtt: ${nve} serving nvo3-hv/${PROTOCOL_VERSION} at ${o.broker.url} (MQTT ${pv === 5 ? "5" : "3.1.1"})`);
    return svc;
  }

  /** The retained online status with this run's bootId (a new bootId tells agents to resync, §3). */
  private async announce(): Promise<void> {
    const s = this.core.settings;
    const body = { state: "online", bootId: s.bootId, protocol: PROTOCOL_VERSION, version: VERSION };
    await this.client.publishAsync(topics.nveStatus(s.nve), encode(body), publishOptions(this.pv, true)).catch((e) => this.log(`mqtt: status: ${e.message}`));
  }

  private onMessage(topic: string, payload: Buffer, corr?: Buffer): void {
    const t = parseNveTopic(this.core.settings.nve, topic);
    if (!t) return;
    if (t.kind === "status") {
      if (payload.length === 0) return; // a cleared retained status
      if (payload.length > MAX_STATUS) return this.log(`agent status from ${t.hv}: ${payload.length} bytes, more than a status (${MAX_STATUS}), ignored`);
      let state: unknown;
      try {
        state = (JSON.parse(payload.toString("utf8")) as { state?: unknown }).state;
      } catch {
        this.log(`agent status from ${t.hv}: not JSON, ignored`);
        return;
      }
      if (state === "online" || state === "offline") void this.core.agentStatus(t.hv, state === "online");
      return;
    }
    const t0 = this.observe ? performance.now() : 0;
    const seen = { op: "" }; // the op, for the metrics: set by the core once decoded
    this.core.request(t.hv, payload, seen).then((rsp) => {
      if (this.observe) this.observe(seen.op || opOf(payload), rsp.ok ? "ok" : String((rsp.error as { code?: unknown } | undefined)?.code ?? "other"), (performance.now() - t0) / 1000);
      if (!this.client.connected && this.client.disconnecting) return;
      if ((rsp.error as { code?: string } | undefined)?.code === "rate-limited" && !this.core.answerRateLimited(t.hv)) return;
      this.client.publish(topics.rsp(t.hv), this.bounded(t.hv, rsp), publishOptions(this.pv, false, corr), (e) => {
        if (e) this.log(`mqtt: response to ${t.hv}: ${e.message}`);
      });
    }, (e) => this.log(`request from ${t.hv}: ${(e as Error).message}`));
  }

  /**
   * A response as sent: never above maxPayload (PROTOCOL.md §2 Authority). A
   * broker drops a client whose packet exceeds its limit, and MQTT.js sends the
   * same QoS 1 packet again on every reconnect (issue 10: the NVE off MQTT), so
   * a reply that would be too big is replaced by a small error with its id.
   */
  // The JSON text itself, not a Buffer of it: the NVE's client writes it
  // straight into the PUBLISH packet (mqtt-lean encodePublish4), one copy
  // and one Buffer less per answer (issue 15); the same bytes on the wire.
  private bounded(hv: string, rsp: Record<string, unknown>): string {
    const text = answerText(rsp);
    const max = this.core.settings.maxPayload;
    // at most 3 UTF-8 bytes per UTF-16 unit: only a long answer is measured
    const bytes = text.length * 3 <= max ? 0 : Buffer.byteLength(text);
    if (bytes <= max) return text;
    this.log(`response ${String(rsp.id)} to ${hv}: ${bytes} bytes exceeds maxPayload ${max}, answered with limit-exceeded`);
    return JSON.stringify(errorResponse(typeof rsp.id === "string" ? rsp.id : null,
      new ProtocolError("limit-exceeded", `the answer (${bytes} bytes) would exceed maxPayload (${max}); ask for less (show: limit)`)));
  }

  sendEvent(hv: string, ev: Event): void {
    const buf = encode(ev);
    if (buf.length > this.core.settings.maxPayload)
      return this.log(`event ${ev.event} to ${hv}: ${buf.length} bytes exceeds maxPayload ${this.core.settings.maxPayload}, not sent`);
    this.client.publish(topics.evt(hv), buf, publishOptions(this.pv), (e) => {
      if (e) this.log(`mqtt: event to ${hv}: ${e.message}`);
    });
  }

  /** Graceful stop: waits for queued changes, publishes the offline status (the will covers crashes), disconnects. */
  async stop(): Promise<void> {
    await this.core.close();
    if (this.client.connected)
      await this.client.publishAsync(topics.nveStatus(this.core.settings.nve), encode({ state: "offline" }), publishOptions(this.pv, true)).catch(() => {});
    await this.client.endAsync();
  }

  /** For tests: drop the connection without a DISCONNECT, so the broker publishes the will (a crash). */
  async kill(): Promise<void> {
    await this.core.close();
    (this.client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
    await this.client.endAsync(true);
  }
}
