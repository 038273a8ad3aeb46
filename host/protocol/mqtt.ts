// How every nvedge process (NVE, agent, IMA) reaches the broker: the
// connection settings, the MQTT.js options built from them (PROTOCOL.md §1:
// QoS 1, MQTT 3.1.1 or 5, TLS with a client certificate for Req-11 mutual
// authentication), TCP_NODELAY and one socket write per turn (coalesce.ts).
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { coalescePerTurn } from "./coalesce.js";

export interface BrokerConnection {
  url: string;
  username?: string;
  password?: string;
  protocolVersion?: 4 | 5;
  /** PEM file paths: TLS with a client certificate (Req-11 mutual authentication). */
  tls?: { cert: string; key: string; ca: string };
  reconnectPeriodMs?: number;
}

export interface ClientOptions {
  /** false: a persistent session, so requests sent while this process was away are delivered. */
  clean?: boolean;
  /** The retained last will (PROTOCOL.md §1 status topics). */
  will?: { topic: string; payload: string };
}

export function mqttClientOptions(b: BrokerConnection, clientId: string, c: ClientOptions = {}): IClientOptions {
  const clean = c.clean ?? true;
  const o: IClientOptions = {
    clientId, protocolVersion: b.protocolVersion ?? 4, clean, reconnectPeriod: b.reconnectPeriodMs ?? 1000,
    connectTimeout: 10_000, keepalive: 30,
  };
  // MQTT.js's trace lines (the `debug` package) cost a call with its
  // arguments at every step of every packet even when off: ~2 % of the NVE's
  // CPU per request (issue 15). Off unless DEBUG asks for them.
  if (!process.env.DEBUG) o.log = () => {};
  if (c.will) o.will = { topic: c.will.topic, payload: Buffer.from(c.will.payload), qos: 1, retain: true };
  // MQTT 5 ends a session with the connection unless told otherwise
  if (b.protocolVersion === 5 && !clean) o.properties = { sessionExpiryInterval: 0xffffffff };
  if (b.username !== undefined) o.username = b.username;
  if (b.password !== undefined) o.password = b.password;
  if (b.tls) {
    o.ca = readFileSync(b.tls.ca);
    o.cert = readFileSync(b.tls.cert);
    o.key = readFileSync(b.tls.key);
    o.rejectUnauthorized = true;
  }
  return o;
}

/** An MQTT.js client's options: each (re)connect builds its TLS stream from them. */
export interface TlsClientLike { options: { cert?: unknown; key?: unknown; ca?: unknown } }

/**
 * Reads and checks a process's own client certificate, key and CA (the NVE's
 * and the IMA's auth.tls, on reload: issue 13) and returns what puts them
 * into the MQTT client: the session up now keeps
 * its handshake, and the next reconnect presents the new certificate (MQTT.js
 * builds each connection's TLS stream from client.options). Without this a
 * renewed certificate reached the broker side only, and the process went on
 * presenting the old one until a restart (and failed to reconnect once it
 * expired, or after a CA change).
 */
export function readClientTls(tls: { cert: string; key: string; ca: string }, client: TlsClientLike): () => void {
  const read = (what: "cert" | "key" | "ca") => {
    try {
      return readFileSync(tls[what]);
    } catch (e) {
      throw new Error(`auth.tls.${what}: cannot read ${tls[what]} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  };
  const f = { cert: read("cert"), key: read("key"), ca: read("ca") };
  try {
    createSecureContext(f);
  } catch (e) {
    throw new Error(`auth.tls: ${tls.cert} with ${tls.key} and ${tls.ca}: ${(e as Error).message}; the running certificate is kept`);
  }
  return () => Object.assign(client.options, f);
}

/**
 * TCP_NODELAY on the client's socket, now and after every reconnect (each
 * makes a new socket): requests, responses and PUBACKs are small packets, and
 * Nagle's algorithm with delayed ACKs would hold each back ~40 ms.
 * Call once per client.
 */
export function tcpNoDelay(client: MqttClient): void {
  const set = () => {
    (client.stream as unknown as { setNoDelay?: (b: boolean) => void } | undefined)?.setNoDelay?.(true);
    // and what the client writes in one turn of the event loop leaves in one
    // write: the PUBACKs of a read's requests with the answers of a group
    // commit (issue 15, host/protocol/coalesce.ts)
    if (client.stream) coalescePerTurn(client.stream);
  };
  set();
  client.on("connect", set);
}

// Network errors while connecting at start mean the broker is not there yet:
// keep retrying (every reconnectPeriod) instead of failing, so an NVE, an agent
// or the IMA started before its broker comes up by itself (issue 17, a broker
// down at start). Anything else (e.g. a refused CONNACK) still fails start.
// On a Unix socket (mqtt+unix://) a broker not up yet is ENOENT (no socket
// file) or ECONNREFUSED (one left behind), and a broker whose listen backlog
// is full refuses at once with EAGAIN where TCP would send its SYN again:
// 100 agents connecting together through Mosquitto's socket met it (bench).
const RETRYABLE = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EAI_AGAIN", "EPIPE", "ENOENT", "EAGAIN"]);

/** Whether a connect error means "retry later" (see above). */
export function retryableConnectError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && RETRYABLE.has(code);
}

/** mqtt.connect that resolves once connected, retrying the errors above while `opts.reconnectPeriod` allows. */
export function connectWhenReachable(url: string, log: (l: string) => void, opts: IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect(url, opts);
  tcpNoDelay(client);
  return whenConnected(client, url, log, opts, () => client.end(true));
}

/** The events whenConnected needs: MQTT.js's client and the NVE's own (mqtt-lean.ts) both have them. */
interface Connecting {
  on(ev: "error", f: (e: Error & { code?: unknown }) => void): unknown;
  off(ev: "error", f: (e: Error & { code?: unknown }) => void): unknown;
  once(ev: "connect", f: () => void): unknown;
}

/** `client` once it connects; a retryable error (above) is logged while `opts.reconnectPeriod` allows, any other ends it (`end`) and rejects. */
export function whenConnected<C extends Connecting>(client: C, url: string, log: (l: string) => void, opts: IClientOptions, end: () => void): Promise<C> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error & { code?: unknown }) => {
      if (retryableConnectError(e) && opts.reconnectPeriod !== 0) return log(`mqtt: ${url}: ${e.message}; retrying`);
      client.off("error", onError);
      end();
      reject(e);
    };
    client.on("error", onError);
    client.once("connect", () => {
      client.off("error", onError);
      resolve(client);
    });
  });
}
