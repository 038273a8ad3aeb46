// The NVE's own MQTT client (issue 15: the NVE's CPU per attach): the same
// session MQTT.js gives it (PROTOCOL.md §1: QoS 1 both ways, MQTT 3.1.1 or
// 5, a retained will, TLS with a client certificate for Req-11, keepalive,
// reconnection, resubscription and retransmission of unacknowledged QoS 1
// publishes), driven on the socket directly.
//
// Why not MQTT.js here: per request the NVE handles four QoS 1 packets (the
// request's PUBLISH in and its PUBACK out, the answer's PUBLISH out and its
// PUBACK in). MQTT.js pipes the socket into a Writable that feeds
// mqtt-packet's parser (a BufferList per read), handles each packet in a
// process.nextTick of its own, keeps an outgoing store entry and a packet
// object per publish, and writes each packet in pieces through
// writeToStream: 25-60 µs of the NVE's ~100 µs per warm attach (bench/README.md
// "Where each microsecond of an attach goes"). Here the frames are cut from
// each read in place (below: the read buffer, what is copied out of it),
// PUBLISH (3.1.1) and PUBACK (both versions) are decoded and encoded by hand
// into one buffer each, and every other packet (CONNACK, SUBACK, MQTT 5
// PUBLISH with its properties, ...) goes through mqtt-packet, MQTT.js's own
// codec, whole frame at a time. What this client writes in one turn of the
// event loop leaves in one socket write (coalesce.ts).
//
// Reading (issue 15, bench/README.md "read15"): the socket reads into one
// buffer of this client's, reused by every read (net.connect's `onread`),
// and the frames are handled in the read callback: no Buffer and ArrayBuffer
// per read and no Readable push / 'data' event (~2.5 µs of a lone paced
// request's ~130 on the NVE's main thread by perf, ~1.2 KB of garbage per
// paced request in the agents' process; the read(2) itself stays). What
// must outlive the callback is copied out of that buffer: a
// frame cut by the read's end, and a PUBLISH's payload (listeners may keep
// it: tests collect them, the NVE decodes it in a later turn). TLS too:
// tls.connect passes `onread` to its socket (Node 20), and the decrypted
// bytes land in the same buffer.
//
// The agents use it by default too (host/agent); MQTT.js stays for the IMA,
// the CLI and WebSockets; NVEDGE_MQTT_CLIENT=mqttjs puts the NVE back on it
// (a bench's A/B, an escape hatch).
import { EventEmitter } from "node:events";
import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions as TlsConnectionOptions } from "node:tls";
import * as mqttPacket from "mqtt-packet";
import type { IPublishPacket, Packet, Parser } from "mqtt-packet";
import type { IClientOptions } from "mqtt";
import { coalescePerTurn } from "./coalesce.js";
import { whenConnected } from "./mqtt.js";

/** A received message's packet as the listeners see it (MQTT.js's shape, the fields they read). */
export interface MessagePacket {
  cmd: "publish";
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  messageId?: number;
  properties?: IPublishPacket["properties"];
}

export interface PublishOptions {
  qos?: 0 | 1 | 2;
  retain?: boolean;
  properties?: IPublishPacket["properties"];
}

type Cb = (e?: Error) => void;

/** net.connect's (and tls.connect's) `onread`: the buffer every read lands in, and the callback given each read's length. */
type OnRead = { buffer: Buffer; callback: (n: number, b: Uint8Array) => boolean };

/**
 * What the NVE (host/control/service.ts), its IMA client
 * (host/ima-client) and the reload of its TLS files use of an MQTT client:
 * MQTT.js's MqttClient and LeanMqttClient both are one.
 */
export interface MqttLike {
  readonly connected: boolean;
  readonly disconnecting: boolean;
  readonly options: { protocolVersion?: number; cert?: unknown; key?: unknown; ca?: unknown };
  on(event: "message", l: (topic: string, payload: Buffer, packet: { properties?: IPublishPacket["properties"] }) => void): unknown;
  on(event: "connect" | "offline" | "close", l: () => void): unknown;
  on(event: "error", l: (e: Error) => void): unknown;
  off(event: string, l: (...a: any[]) => void): unknown;
  publish(topic: string, payload: Buffer | string, opts: PublishOptions, cb?: (e?: Error) => void): unknown;
  publishAsync(topic: string, payload: Buffer | string, opts: PublishOptions): Promise<unknown>;
  subscribeAsync(topics: string | string[], opts: { qos: 0 | 1 | 2 }): Promise<{ topic: string; qos: number }[]>;
  unsubscribe(topics: string | string[]): unknown;
  endAsync(force?: boolean): Promise<void>;
}

/** MQTT 5 reason codes / MQTT 3.1.1 CONNACK return codes, for error messages (MQTT 5.0 §2.4, 3.1.1 §3.2.2.3). */
const REASONS: Record<number, string> = {
  1: "Unacceptable protocol version", 2: "Identifier rejected", 3: "Server unavailable", 4: "Bad username or password", 5: "Not authorized",
  128: "Unspecified error", 129: "Malformed Packet", 130: "Protocol Error", 131: "Implementation specific error", 132: "Unsupported Protocol Version",
  133: "Client Identifier not valid", 134: "Bad User Name or Password", 135: "Not authorized", 136: "Server unavailable", 137: "Server busy",
  138: "Banned", 139: "Server shutting down", 140: "Bad authentication method", 141: "Keep Alive timeout", 142: "Session taken over",
  143: "Topic Filter invalid", 144: "Topic Name invalid", 145: "Packet identifier in use", 146: "Packet Identifier not found",
  147: "Receive Maximum exceeded", 148: "Topic Alias invalid", 149: "Packet too large", 151: "Quota exceeded", 153: "Payload format invalid",
  154: "Retain not supported", 155: "QoS not supported", 156: "Use another server", 157: "Server moved", 159: "Connection rate exceeded",
};

export class MqttReasonError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

/** One QoS 1 publish waiting for its PUBACK (MQTT 3.1.1 §4.3.2): sent again, DUP set, after a reconnect (§4.4). */
interface InFlight { buf: Buffer; cb: Cb | undefined; sent: boolean }

interface PendingSub { packet: Packet; topics: string[]; resolve(g: { topic: string; qos: number }[]): void; reject(e: Error): void }

/** The size of MQTT's variable byte integer for n (3.1.1 §2.2.3). */
const varLen = (n: number) => (n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4);

function writeVar(buf: Buffer, o: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 128;
    buf[o++] = b;
  } while (n > 0);
  return o;
}

/**
 * The URLs this client serves (TCP and TLS, and both over a Unix socket:
 * `mqtt+unix:///run/mosquitto/nvedge.sock`, MQTT.js's own spelling, so that
 * every nvedge client takes the same URL); WebSockets stay with MQTT.js.
 */
export const LEAN_SCHEMES = /^(mqtts?|tcp|ssl|tls|mqtts?\+unix):\/\//;

/**
 * The socket path of an `mqtt+unix://` or `mqtts+unix://` URL (its path,
 * percent-decoded), or undefined for a network URL. A broker on the same
 * host (an NVE next to its Mosquitto) is reached without TCP: on this
 * machine a loopback segment costs its sender the whole TCP path, out and
 * in, at every write (bench/README.md "tail15").
 */
export function unixSocketPath(url: string): string | undefined {
  const m = /^mqtts?\+unix:\/\/([^/?#]*)(\/[^?#]*)/.exec(url);
  if (!m) {
    if (/^mqtts?\+unix:/.test(url)) throw new Error(`${url}: a Unix socket URL names an absolute path (mqtt+unix:///run/mosquitto/nvedge.sock)`);
    return undefined;
  }
  if (m[1] !== "" && m[1] !== "localhost") throw new Error(`${url}: a Unix socket is on this host: mqtt+unix:///PATH, with no host name`);
  return decodeURIComponent(m[2]);
}

export class LeanMqttClient extends EventEmitter implements MqttLike {
  connected = false;
  disconnecting = false;
  reconnecting = false;
  /** The live socket (tests destroy it to simulate a crash, as with MQTT.js's `stream`). */
  stream: Socket | undefined;
  readonly options: IClientOptions & { protocolVersion: 4 | 5 };
  private readonly pv: 4 | 5;
  private readonly url: URL;
  /** The broker's Unix socket, for an mqtt+unix:// URL. */
  private readonly unixPath: string | undefined;
  /** QoS 1 publishes not yet acknowledged, in the order they were made (a Map keeps it): retransmitted in that order. */
  private readonly inflight = new Map<number, InFlight>();
  /** QoS 0 publishes made while offline (MQTT.js's queueQoSZero). */
  private queued0: { buf: Buffer; cb: Cb | undefined }[] = [];
  private readonly pendingSubs = new Map<number, PendingSub>();
  private readonly pendingUnsubs = new Map<number, { packet: Packet; done: Cb }>();
  /** Granted subscriptions, made again after each reconnect (a clean session forgets them). */
  private readonly subs = new Map<string, 0 | 1 | 2>();
  /** Incoming QoS 2 ids between PUBLISH and PUBREL (delivered once, 3.1.1 §4.3.3). */
  private readonly qos2In = new Set<number>();
  private nextId = 0;
  /** Bytes of a frame not yet complete: the reads so far and their total. */
  private partial: Buffer[] = [];
  private partialLen = 0;
  private need = 0;
  /** The buffer every read of the socket lands in (onread), made at the first connect and kept across reconnects. */
  private readBuf: Buffer | undefined;
  private parser: Parser | undefined;
  private connackTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private attempts = 0;
  private sentSinceTick = false;
  private pingTicks = 0;
  private closeWaiters: (() => void)[] = [];

  constructor(url: string, opts: IClientOptions) {
    super();
    const u = new URL(url);
    if (!LEAN_SCHEMES.test(url)) throw new Error(`${url}: this MQTT client speaks mqtt://, mqtts:// and mqtt+unix:// (WebSockets: MQTT.js)`);
    this.url = u;
    this.unixPath = unixSocketPath(url);
    this.pv = opts.protocolVersion === 5 ? 5 : 4;
    this.options = { ...opts, protocolVersion: this.pv };
    this.connect();
  }

  private get secure(): boolean {
    return this.url.protocol === "mqtts:" || this.url.protocol === "ssl:" || this.url.protocol === "tls:" || this.url.protocol === "mqtts+unix:";
  }

  private connect(): void {
    const o = this.options;
    const host = this.url.hostname.replace(/^\[|\]$/g, "");
    const port = Number(this.url.port) || (this.secure ? 8883 : 1883);
    // TLS from this.options at every connect: a reload's new certificate is presented from the next connection (mqtt.ts readClientTls)
    const path = this.unixPath;
    // onread: tls.connect hands it to its net.Socket (Node 20's _tls_wrap.js); @types/node's ConnectionOptions does not list it
    const tlsOpts = (): TlsConnectionOptions & { onread: OnRead } => ({ ...(path !== undefined ? { path } : { host, port }), ca: o.ca as never, cert: o.cert as never, key: o.key as never,
      rejectUnauthorized: o.rejectUnauthorized !== false, ...(path !== undefined || isIP(host) ? {} : { servername: host }), onread: this.onread() });
    const s: Socket = this.secure
      ? tlsConnect(tlsOpts())
      : path !== undefined ? netConnect({ path, onread: this.onread() }) : netConnect({ host, port, onread: this.onread() });
    this.stream = s;
    if (path === undefined) s.setNoDelay(true);
    coalescePerTurn(s);
    this.partial = [];
    this.partialLen = 0;
    this.parser = mqttPacket.parser({ protocolVersion: this.pv });
    this.parser.on("packet", (p: Packet) => this.onPacket(p));
    this.parser.on("error", (e: Error) => this.protocolError(`malformed packet from the broker: ${e.message}`));
    s.on("error", (e: Error & { code?: unknown }) => {
      if (s === this.stream && e.code) this.emit("error", e); // as MQTT.js: socket errors with a code are told (connectWhenReachable retries them)
    });
    s.on("close", () => this.onClose(s));
    const connect: Packet = {
      cmd: "connect", protocolId: "MQTT", protocolVersion: this.pv, clean: o.clean ?? true, clientId: o.clientId ?? "",
      keepalive: o.keepalive ?? 60,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: Buffer.from(o.password as string | Buffer) } : {}),
      ...(o.will ? { will: { topic: o.will.topic, payload: Buffer.from(o.will.payload as Buffer), qos: o.will.qos ?? 0, retain: !!o.will.retain } } : {}),
      ...(this.pv === 5 && o.properties ? { properties: o.properties as never } : {}),
    };
    this.send(mqttPacket.generate(connect, { protocolVersion: this.pv }));
    const ms = o.connectTimeout ?? 30_000;
    this.connackTimer = setTimeout(() => {
      this.emit("error", new Error("connack timeout"));
      s.destroy();
    }, ms);
  }

  /** Reads into this client's one buffer, handled in the callback (Node's onread: `false` would pause the socket). */
  private onread(): OnRead {
    return { buffer: (this.readBuf ??= Buffer.allocUnsafe(READ_BUFFER)), callback: (n, b) => { this.onData(b as Buffer, n); return true; } };
  }

  private send(buf: Buffer): void {
    if (!this.stream) return; // gone meanwhile: what matters is sent again after the reconnect (inflight, subscriptions)
    this.sentSinceTick = true;
    this.stream.write(buf);
  }

  // ------------------------------------------------------------ reading

  /**
   * Cuts the read's first `n` bytes into frames (fixed header, remaining
   * length, 3.1.1 §2.2) and handles each in place. A frame cut by the read's
   * end waits, with the reads after it, until all of it is here (`need`: its
   * size, or 0 while its length is itself incomplete), and is joined once.
   * `chunk` is the reused read buffer (onread), overwritten by the next
   * read, so what is kept past this call is copied out of it (`borrowed`);
   * a joined frame is this client's own.
   */
  private onData(chunk: Buffer, n: number): void {
    let buf = chunk;
    let borrowed = true;
    if (this.partialLen > 0) {
      this.partial.push(copyOf(chunk, 0, n));
      this.partialLen += n;
      if (this.need > this.partialLen) return;
      buf = Buffer.concat(this.partial, this.partialLen);
      n = this.partialLen;
      borrowed = false;
      this.partial = [];
      this.partialLen = 0;
    }
    let o = 0;
    while (o < n && this.stream) {
      let i = o + 1, len = 0, mul = 1, b = 128;
      while (b & 128) {
        if (i - o > 4) return this.protocolError("malformed remaining length from the broker"); // at most 4 bytes (§2.2.3)
        if (i >= n) break;
        b = buf[i++];
        len += (b & 127) * mul;
        mul *= 128;
      }
      if (b & 128 || i + len > n) { // the rest of this frame comes in a later read
        this.need = b & 128 ? 0 : i + len - o;
        break;
      }
      this.onFrame(buf, o, i, i + len, borrowed);
      o = i + len;
    }
    if (o < n && this.stream) {
      this.partial = [borrowed ? copyOf(buf, o, n) : buf.subarray(o, n)];
      this.partialLen = n - o;
    }
  }

  private onFrame(buf: Buffer, start: number, s: number, e: number, borrowed: boolean): void {
    const h = buf[start];
    const type = h >> 4;
    if (type === 3 && this.pv === 4) return this.onPublish4(h, buf, s, e, borrowed);
    if (type === 4 && e - s >= 2) { // PUBACK: id, and in MQTT 5 a reason code when longer (5.0 §3.4.2.1)
      const id = (buf[s] << 8) | buf[s + 1];
      return this.acked(id, e - s > 2 ? buf[s + 2] : 0);
    }
    if (type === 13) { // PINGRESP
      this.pingTicks = 0;
      return;
    }
    // one whole frame: mqtt-packet emits it at once; its packet's buffers (an MQTT 5 payload, correlation data) are views of what it is given
    this.parser!.parse(borrowed ? copyOf(buf, start, e) : buf.subarray(start, e));
  }

  /** An MQTT 3.1.1 PUBLISH (§3.3): the payload a view of the read, or a copy of it when the read's buffer is reused. */
  private onPublish4(h: number, buf: Buffer, s: number, e: number, borrowed: boolean): void {
    const q = (h >> 1) & 3;
    if (q === 3 || e - s < 2) return this.protocolError("malformed PUBLISH from the broker");
    const tl = (buf[s] << 8) | buf[s + 1];
    let p = s + 2 + tl;
    if (p + (q ? 2 : 0) > e) return this.protocolError("malformed PUBLISH from the broker");
    const qos = q as 0 | 1 | 2;
    const topic = buf.toString("utf8", s + 2, p);
    let id: number | undefined;
    if (qos) {
      id = (buf[p] << 8) | buf[p + 1];
      p += 2;
    }
    const payload = borrowed ? copyOf(buf, p, e) : buf.subarray(p, e);
    this.delivered({ cmd: "publish", topic, payload, qos, retain: (h & 1) === 1, dup: (h & 8) === 8, messageId: id });
  }

  /** A received message to the listeners, then its acknowledgement (as MQTT.js: after the handlers ran). */
  private delivered(p: MessagePacket): void {
    if (p.qos === 2) {
      const first = !this.qos2In.has(p.messageId!);
      this.qos2In.add(p.messageId!);
      if (first) this.emit("message", p.topic, p.payload, p);
      return this.send(Buffer.from([0x50, 2, p.messageId! >> 8, p.messageId! & 255])); // PUBREC
    }
    this.emit("message", p.topic, p.payload, p);
    if (p.qos === 1 && this.stream) this.send(ack4(0x40, p.messageId!)); // PUBACK
  }

  /** The packets mqtt-packet decoded (all but PUBLISH 3.1.1, PUBACK and PINGRESP). */
  private onPacket(p: Packet): void {
    switch (p.cmd) {
      case "connack": return this.onConnack(this.pv === 5 ? p.reasonCode ?? 0 : p.returnCode ?? 0, p.properties?.serverKeepAlive);
      case "publish": {
        if (p.properties?.topicAlias !== undefined && !p.topic) return this.protocolError("a topic alias from the broker, which this client never allowed (5.0 §3.3.2.3.4)");
        const payload = typeof p.payload === "string" ? Buffer.from(p.payload) : p.payload;
        return this.delivered({ cmd: "publish", topic: p.topic, payload, qos: p.qos, retain: p.retain, dup: p.dup, ...(p.messageId !== undefined ? { messageId: p.messageId } : {}),
          ...(p.properties ? { properties: p.properties } : {}) });
      }
      case "pubrel": {
        this.qos2In.delete(p.messageId!);
        return this.send(mqttPacket.generate({ cmd: "pubcomp", messageId: p.messageId! }, { protocolVersion: this.pv }));
      }
      case "suback": {
        const sub = this.pendingSubs.get(p.messageId!);
        if (!sub) return;
        this.pendingSubs.delete(p.messageId!);
        const granted = sub.topics.map((topic, i) => ({ topic, qos: (p.granted as number[])[i] ?? 128 }));
        for (const g of granted) if (g.qos >= 128) this.subs.delete(g.topic); // refused: not made again after a reconnect
        return sub.resolve(granted);
      }
      case "unsuback": {
        const u = this.pendingUnsubs.get(p.messageId!);
        this.pendingUnsubs.delete(p.messageId!);
        return u?.done();
      }
      case "disconnect": { // MQTT 5: the broker says why before it closes (5.0 §3.14)
        const rc = p.reasonCode ?? 0;
        this.emit("error", new MqttReasonError(`the broker disconnected this client: ${REASONS[rc] ?? `reason ${rc}`}`, rc));
        return;
      }
      case "pubrec": case "pubcomp": // answers to QoS 2 publishes, which this client never makes
      default:
        return this.protocolError(`unexpected ${p.cmd} from the broker`);
    }
  }

  private protocolError(msg: string): void {
    this.emit("error", new Error(msg));
    this.stream?.destroy();
  }

  // ------------------------------------------------------------ session

  private onConnack(rc: number, serverKeepAlive?: number): void {
    clearTimeout(this.connackTimer);
    if (rc !== 0) {
      // the same error MQTT.js gives (its code the return / reason code): a refused CONNACK fails start (mqtt.ts)
      this.emit("error", new MqttReasonError(`Connection refused: ${REASONS[rc] ?? `reason ${rc}`}`, rc));
      this.stream?.destroy();
      return;
    }
    this.connected = true;
    this.reconnecting = false;
    this.attempts = 0;
    this.armKeepalive(serverKeepAlive);
    // the session again (a clean session kept nothing, 3.1.1 §3.1.2.4): the subscriptions, then what is unacknowledged, in order, then what waited
    const pendingTopics = new Set([...this.pendingSubs.values()].flatMap((p) => p.topics));
    const again = [...this.subs].filter(([t]) => !pendingTopics.has(t));
    if (again.length) {
      const id = this.allocId();
      const topics = again.map(([t]) => t);
      this.pendingSubs.set(id, {
        packet: { cmd: "subscribe", messageId: id, subscriptions: again.map(([topic, qos]) => ({ topic, qos })) }, topics,
        resolve: (g) => { for (const x of g) if (x.qos >= 128) this.emit("error", new Error(`the broker refused the subscription ${x.topic} again after a reconnect`)); },
        reject: () => {},
      });
    }
    for (const p of this.pendingSubs.values()) this.send(mqttPacket.generate(p.packet, { protocolVersion: this.pv }));
    for (const u of this.pendingUnsubs.values()) this.send(mqttPacket.generate(u.packet, { protocolVersion: this.pv }));
    for (const f of this.inflight.values()) {
      if (f.sent) {
        f.buf = Buffer.from(f.buf); // a copy: the old socket may still hold the first
        f.buf[0] |= 8; // DUP (3.1.1 §3.3.1.1)
      }
      f.sent = true;
      this.send(f.buf);
    }
    const q0 = this.queued0;
    this.queued0 = [];
    for (const q of q0) {
      this.send(q.buf);
      q.cb?.();
    }
    this.emit("connect");
  }

  private onClose(s: Socket): void {
    if (s !== this.stream) return;
    this.stream = undefined;
    this.parser = undefined;
    const was = this.connected;
    this.connected = false;
    clearTimeout(this.connackTimer);
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
    if (was) this.emit("close");
    if (this.disconnecting) {
      this.failAll(new Error("client disconnecting"));
      for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    if (!this.reconnecting) {
      this.reconnecting = true;
      this.emit("offline");
    }
    // backoff from reconnectPeriod, doubling to at most 8 times it (10 s at most, unless the period is longer), ±20 %:
    // a broker's restart is not met by every NVE at the same instant
    const period = this.options.reconnectPeriod ?? 1000;
    if (period <= 0) {
      this.failAll(new Error("connection closed"));
      return;
    }
    const ms = Math.min(period * 2 ** Math.min(this.attempts, 3), Math.max(period, 10_000)) * (0.8 + 0.4 * Math.random());
    this.attempts++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.disconnecting) this.connect();
    }, ms);
  }

  private failAll(e: Error): void {
    const f = [...this.inflight.values()];
    this.inflight.clear();
    const q = this.queued0;
    this.queued0 = [];
    const subs = [...this.pendingSubs.values()];
    this.pendingSubs.clear();
    const unsubs = [...this.pendingUnsubs.values()];
    this.pendingUnsubs.clear();
    for (const x of f) x.cb?.(e);
    for (const x of q) x.cb?.(e);
    for (const x of subs) x.reject(e);
    for (const x of unsubs) x.done(e);
  }

  /**
   * Keepalive (3.1.1 §3.1.2.10): a tick every half period; a PINGREQ when
   * nothing was sent since the last tick (so the broker hears from this
   * client at least once per period), and the connection dropped when a
   * PINGRESP is a whole period late.
   */
  private armKeepalive(serverKeepAlive?: number): void {
    const k = (serverKeepAlive ?? this.options.keepalive ?? 60) * 1000; // MQTT 5: the broker's Server Keep Alive wins (5.0 §3.2.2.3.14)
    if (k <= 0) return;
    this.sentSinceTick = false;
    this.pingTicks = 0;
    this.keepaliveTimer = setInterval(() => {
      if (!this.stream || !this.connected) return;
      if (this.pingTicks > 0 && ++this.pingTicks > 2) {
        this.emit("error", new Error("Keepalive timeout"));
        this.stream.destroy();
        return;
      }
      if (!this.sentSinceTick && this.pingTicks === 0) {
        this.send(Buffer.from([0xc0, 0])); // PINGREQ
        this.pingTicks = 1;
      }
      this.sentSinceTick = false;
    }, k / 2);
    this.keepaliveTimer.unref();
  }

  private allocId(): number {
    for (let n = 0; n < 65_535; n++) {
      this.nextId = this.nextId >= 65_535 ? 1 : this.nextId + 1;
      const id = this.nextId;
      if (!this.inflight.has(id) && !this.pendingSubs.has(id) && !this.pendingUnsubs.has(id)) return id;
    }
    throw new Error("no MQTT packet identifier free: 65,535 packets unacknowledged");
  }

  private acked(id: number, rc: number): void {
    const f = this.inflight.get(id);
    if (!f) return;
    this.inflight.delete(id);
    if (f.cb) f.cb(rc >= 0x80 ? new MqttReasonError(`Publish error: ${REASONS[rc] ?? `reason ${rc}`}`, rc) : undefined);
  }

  // ------------------------------------------------------------ the API (MQTT.js's names)

  publish(topic: string, payload: Buffer | string, opts: PublishOptions = {}, cb?: Cb): this {
    const qos = opts.qos ?? 0;
    if (this.disconnecting) {
      cb?.(new Error("client disconnecting"));
      return this;
    }
    if (qos === 2) {
      cb?.(new Error("QoS 2 publishes are not supported by the NVE's MQTT client (PROTOCOL.md §1 uses QoS 1)"));
      return this;
    }
    const id = qos ? this.allocId() : 0;
    const buf = this.pv === 4
      ? encodePublish4(topic, payload, qos, !!opts.retain, id) // a string written straight into the packet
      : mqttPacket.generate({ cmd: "publish", topic, payload: typeof payload === "string" ? Buffer.from(payload) : payload, qos, retain: !!opts.retain, dup: false, ...(qos ? { messageId: id } : {}),
        ...(opts.properties ? { properties: opts.properties } : {}) }, { protocolVersion: 5 });
    if (qos === 0) {
      if (this.connected) {
        this.send(buf);
        if (cb) setImmediate(cb);
      } else this.queued0.push({ buf, cb });
      return this;
    }
    const f: InFlight = { buf, cb, sent: this.connected };
    this.inflight.set(id, f);
    if (this.connected) this.send(buf);
    return this;
  }

  publishAsync(topic: string, payload: Buffer | string, opts: PublishOptions = {}): Promise<void> {
    return new Promise((res, rej) => this.publish(topic, payload, opts, (e) => (e ? rej(e) : res())));
  }

  subscribeAsync(topics: string | string[], opts: { qos: 0 | 1 | 2 }): Promise<{ topic: string; qos: number }[]> {
    const list = typeof topics === "string" ? [topics] : topics;
    if (this.disconnecting) return Promise.reject(new Error("client disconnecting"));
    return new Promise((resolve, reject) => {
      const id = this.allocId();
      const packet: Packet = { cmd: "subscribe", messageId: id, subscriptions: list.map((topic) => ({ topic, qos: opts.qos })) };
      for (const t of list) this.subs.set(t, opts.qos);
      this.pendingSubs.set(id, { packet, topics: list, resolve, reject });
      if (this.connected) this.send(mqttPacket.generate(packet, { protocolVersion: this.pv })); // else sent at the CONNACK
    });
  }

  unsubscribe(topics: string | string[], cb?: Cb): this {
    const list = typeof topics === "string" ? [topics] : topics;
    for (const t of list) this.subs.delete(t);
    if (!this.connected) { // a clean session: the broker holds nothing of it after the reconnect
      if (cb) setImmediate(cb);
      return this;
    }
    const id = this.allocId();
    const packet: Packet = { cmd: "unsubscribe", messageId: id, unsubscriptions: list };
    this.pendingUnsubs.set(id, { packet, done: cb ?? (() => {}) });
    this.send(mqttPacket.generate(packet, { protocolVersion: this.pv }));
    return this;
  }

  /**
   * Ends the session. Not forced: what is unacknowledged gets up to
   * `graceMs` to be (as MQTT.js waits for its in-flight messages), then a
   * DISCONNECT (no will: a clean stop, 3.1.1 §3.14). Forced: the socket goes
   * at once. Either way no reconnection follows, and whatever is still
   * unacknowledged is failed ("client disconnecting").
   */
  async endAsync(force = false, graceMs = 5000): Promise<void> {
    if (this.disconnecting && !this.stream) return;
    this.disconnecting = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const s = this.stream;
    if (!s) {
      this.failAll(new Error("client disconnecting"));
      return;
    }
    const closed = new Promise<void>((r) => this.closeWaiters.push(r));
    if (!force && this.connected) {
      const t0 = Date.now();
      while (this.inflight.size > 0 && this.stream === s && Date.now() - t0 < graceMs) await new Promise((r) => setTimeout(r, 10));
      if (this.stream === s) {
        s.write(Buffer.from([0xe0, 0])); // DISCONNECT
        s.end();
        const t = setTimeout(() => s.destroy(), 1000); // a broker that never closes its side
        t.unref();
      }
    } else s.destroy();
    await closed;
  }
}

/**
 * The size of a client's read buffer: Node's own read size (64 KiB), so that
 * a read at full load takes as much as before. One per client, allocated once.
 */
const READ_BUFFER = 65_536;

/** Bytes s..e of buf in a buffer of their own (Buffer.allocUnsafe: a slice of Node's pool when small, no ArrayBuffer of its own). */
function copyOf(buf: Buffer, s: number, e: number): Buffer {
  const c = Buffer.allocUnsafe(e - s);
  buf.copy(c, 0, s, e);
  return c;
}

/** A 4-byte acknowledgement (PUBACK, PUBREC: type, remaining length 2, packet id), without Buffer.from's array (issue 15: one per request). */
function ack4(type: number, id: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b[0] = type;
  b[1] = 2;
  b[2] = id >> 8;
  b[3] = id & 255;
  return b;
}

/** An MQTT 3.1.1 PUBLISH (§3.3) in one buffer: fixed header, topic, packet id (QoS > 0), payload. */
export function encodePublish4(topic: string, payload: Buffer | string, qos: 0 | 1, retain: boolean, id: number): Buffer {
  const tl = Buffer.byteLength(topic);
  const pl = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
  const rl = 2 + tl + (qos ? 2 : 0) + pl;
  const buf = Buffer.allocUnsafe(1 + varLen(rl) + rl);
  buf[0] = 0x30 | (qos << 1) | (retain ? 1 : 0);
  let o = writeVar(buf, 1, rl);
  buf[o++] = tl >> 8;
  buf[o++] = tl & 255;
  o += buf.write(topic, o, "utf8");
  if (qos) {
    buf[o++] = id >> 8;
    buf[o++] = id & 255;
  }
  if (typeof payload === "string") buf.write(payload, o, "utf8");
  else payload.copy(buf, o);
  return buf;
}

/** connectWhenReachable (mqtt.ts) on LeanMqttClient: resolves once connected; a refused CONNACK or a non-network error rejects. */
export function connectLeanWhenReachable(url: string, log: (l: string) => void, opts: IClientOptions): Promise<LeanMqttClient> {
  let client: LeanMqttClient;
  try {
    client = new LeanMqttClient(url, opts);
  } catch (e) {
    return Promise.reject(e);
  }
  return whenConnected(client, url, log, opts, () => void client.endAsync(true));
}
