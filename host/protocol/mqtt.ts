// How every nvedge process (NVE, agent, IMA) reaches the broker: the
// connection settings, the MQTT.js options built from them (PROTOCOL.md §1:
// QoS 1, MQTT 3.1.1 or 5, TLS with a client certificate for Req-11 mutual
// authentication), and TCP_NODELAY.
import { readFileSync } from "node:fs";
import type { IClientOptions, MqttClient } from "mqtt";

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

/**
 * TCP_NODELAY on the client's socket, now and after every reconnect (each
 * makes a new socket): requests, responses and PUBACKs are small packets, and
 * Nagle's algorithm with delayed ACKs would hold each back ~40 ms.
 * Call once per client.
 */
export function tcpNoDelay(client: MqttClient): void {
  const set = () => (client.stream as unknown as { setNoDelay?: (b: boolean) => void } | undefined)?.setNoDelay?.(true);
  set();
  client.on("connect", set);
}
