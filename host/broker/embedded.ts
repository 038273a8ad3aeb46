// The embedded MQTT broker (issue 3 "Brokers"): aedes (MQTT 3.1.1) in-process,
// started by `nvedge run` when no broker is configured. It enforces the topic
// ACL of PROTOCOL.md §1/§6 (host/broker/acl.ts, shared with the Mosquitto
// acl_file generator) and the identities of INTERFACES.md `auth`:
// - passwordFile: Mosquitto's password file; the username is the identity;
// - tls: TLS with client certificates signed by `ca` (RFC 8394 Req-11, mutual
//   authentication); the certificate's CN is the identity;
// - neither: loopback only, the username is the identity (a laptop lab).
// Every authentication result is logged (STANDARDS.md: "log every
// authentication result").
//
// Issue 10 (tenant isolation): a client id is the identity or starts with
// `{identity}-` (no one squats another's session); connections, sessions per
// identity and each session's queue are capped (host/broker/limits.ts); a
// connection must complete CONNECT within 10 s; retained messages only where
// the protocol has them, and an agent's status only under configured NVE
// names and small (host/broker/acl.ts). Refusals are logged rate-limited.
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, createSecureContext, type TLSSocket } from "node:tls";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { Aedes } from "aedes";
import { grantsFor, checkRoles, publishRefusal, canRead, canSubscribe, clientIdAllowed, isValidIdentity, IDENTITY_RE, type Grants, type AclRoles } from "./acl.js";
import { brokerLimits, BrokerLimitsError, type BrokerLimits } from "./limits.js";
import { rateLimitedLog } from "../protocol/rate-log.js";
import { loadPasswordFile, verifyPassword, type PasswordEntry } from "./passwd.js";
import { coalescePerTurn } from "../protocol/coalesce.js";

export interface BrokerOptions {
  host?: string;
  port?: number;
  passwordFile?: string;
  tls?: { cert: string; key: string; ca: string };
  nves?: string[];
  imas?: string[];
  operators?: string[];
  /** per NVE, the hypervisors on its ports: it writes rsp/evt only to them (absent: any) */
  hypervisors?: Record<string, string[]>;
  maxPayload?: number;
  limits?: Partial<BrokerLimits>;
  log?: (line: string) => void;
}

export interface EmbeddedBroker {
  url: string;
  port: number;
  /** Re-reads the password file and the TLS files (as Mosquitto does on SIGHUP); on an error the old ones stay and the error is thrown. */
  reload(): void;
  close(): Promise<void>;
}

export class BrokerConfigError extends Error {}

/** PROTOCOL.md §1 default maximum payload. */
export const DEFAULT_MAX_PAYLOAD = 256 * 1024;

/**
 * The broker's own packet limit. It is well above the protocol's maxPayload so
 * that an oversized request still reaches the NVE, which answers `too-large`
 * (PROTOCOL.md §1); only packets beyond this cut the connection, to bound memory.
 */
export function brokerPacketLimit(maxPayload: number): number {
  return 2 * maxPayload + 64 * 1024; // + room for the topic and the fixed/variable headers
}

export function isLoopbackHost(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || /^::ffff:127\./i.test(host);
  return false;
}

// Where denied PUBLISHes go: a $-topic that no filter can reach ([MQTT-4.7.2-1])
// and that canSubscribe never grants.
const DENIED_SINK = "$nvedge/denied";

interface ConnLike { remoteAddress?: string; remotePort?: number; getPeerCertificate?: TLSSocket["getPeerCertificate"] }
interface AedesClientLike { id: string; conn: ConnLike; _parser?: any }

/**
 * Caps each session's queue of QoS 1 messages (offline, or sent and not
 * acknowledged) in aedes' in-memory persistence, which has no limit of its
 * own: beyond `maxQueuedMessages` or `maxQueuedBytes` a new message is not
 * queued for that session (as Mosquitto's max_queued_messages/bytes do). A
 * connected session over its cap is disconnected by aedes (its delivery has
 * no queue entry), and gets its queue on reconnect.
 */
function capQueues(persistence: any, limits: BrokerLimits, dropped: (clientId: string, why: string) => void): void {
  const queues = new Map<string, { n: number; bytes: number }>();
  const size = (p: { payload?: { length: number } }) => p.payload?.length ?? 0;
  const admit = (clientId: string, packet: any): boolean => {
    const q = queues.get(clientId) ?? { n: 0, bytes: 0 };
    if (q.n + 1 > limits.maxQueuedMessages) { dropped(clientId, `${q.n} messages queued (limit ${limits.maxQueuedMessages})`); return false; }
    if (q.bytes + size(packet) > limits.maxQueuedBytes) { dropped(clientId, `${q.bytes} bytes queued (limit ${limits.maxQueuedBytes})`); return false; }
    q.n++;
    q.bytes += size(packet);
    queues.set(clientId, q);
    return true;
  };
  const enqueue = persistence.outgoingEnqueue.bind(persistence);
  const enqueueCombi = persistence.outgoingEnqueueCombi.bind(persistence);
  const clear = persistence.outgoingClearMessageId.bind(persistence);
  persistence.outgoingEnqueue = (sub: { clientId: string }, packet: any) =>
    admit(sub.clientId, packet) ? enqueue(sub, packet) : Promise.resolve();
  persistence.outgoingEnqueueCombi = (subs: { clientId: string }[], packet: any) => {
    const ok = subs.filter((s) => admit(s.clientId, packet));
    return ok.length ? enqueueCombi(ok, packet) : Promise.resolve();
  };
  persistence.outgoingClearMessageId = (client: { id: string }, packet: any) =>
    Promise.resolve(clear(client, packet)).then((p: any) => {
      const q = queues.get(client.id);
      if (p && q) {
        q.n--;
        q.bytes -= size(p);
        if (q.n <= 0) queues.delete(client.id);
      }
      return p;
    });
}

/** The TLS context of the broker, at start and on reload: TLS 1.2 or later, as before (RFC 8394 Req-11 mutual authentication). */
function secureOptions(f: { cert: Buffer; key: Buffer; ca: Buffer }) {
  return { cert: f.cert, key: f.key, ca: f.ca, minVersion: "TLSv1.2" as const };
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new BrokerConfigError(`auth.tls.${what}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * Caps the MQTT remaining length a client may announce. aedes (1.2) has no
 * such option and would buffer up to 256 MB per packet; the parser's length
 * state is wrapped so an oversized packet is refused as soon as its fixed
 * header arrives, before its body is buffered.
 */
let warnedNoLimit = false;
function limitPacketSize(client: AedesClientLike, limit: number, log: (l: string) => void): void {
  const parser = client._parser;
  if (!parser || typeof parser._parseLength !== "function") {
    if (!warnedNoLimit) log("broker: warning: this aedes/mqtt-packet version cannot be given a packet size limit; packets up to 256 MB are accepted");
    warnedNoLimit = true;
    return;
  }
  const parseLength = parser._parseLength;
  parser._parseLength = function (this: any) {
    const ok = parseLength.call(this);
    if (ok && this.packet.length > limit) {
      log(`broker: client ${client.id ?? "?"} from ${client.conn.remoteAddress}: packet of ${this.packet.length} bytes exceeds the broker limit of ${limit}; disconnecting`);
      this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the broker limit of ${limit}`));
      return false;
    }
    return ok;
  };
}

export async function startEmbeddedBroker(o: BrokerOptions): Promise<EmbeddedBroker> {
  const host = o.host ?? "127.0.0.1";
  const port = o.port ?? 1883;
  const log = o.log ?? (() => {});
  const maxPayload = o.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new BrokerConfigError(`broker: port ${port} is not 0..65535`);
  if (!Number.isInteger(maxPayload) || maxPayload < 1) throw new BrokerConfigError(`broker: maxPayload ${maxPayload} is not a positive integer`);
  const roles: AclRoles = { nves: o.nves ?? [], imas: o.imas ?? ["ima"], operators: o.operators ?? [], hypervisors: o.hypervisors };
  let limits: BrokerLimits;
  try {
    limits = brokerLimits(o.limits);
  } catch (e) {
    if (e instanceof BrokerLimitsError) throw new BrokerConfigError(`broker: ${e.message}`);
    throw e;
  }
  const note = rateLimitedLog(log);
  try {
    checkRoles(roles);
  } catch (e) {
    throw new BrokerConfigError(`broker: ${(e as Error).message}`);
  }
  if (!o.passwordFile && !o.tls && !isLoopbackHost(host)) {
    throw new BrokerConfigError(`broker: refusing to listen on ${host} without authentication; without auth.passwordFile or auth.tls the embedded broker listens on loopback only (INTERFACES.md auth)`);
  }
  const readUsers = (path: string) => {
    try {
      return loadPasswordFile(path);
    } catch (e) {
      throw new BrokerConfigError(`auth.passwordFile: ${(e as Error).message}`);
    }
  };
  let users: Map<string, PasswordEntry> | undefined = o.passwordFile ? readUsers(o.passwordFile) : undefined;
  const tlsFiles = o.tls ? { cert: readPem(o.tls.cert, "cert"), key: readPem(o.tls.key, "key"), ca: readPem(o.tls.ca, "ca") } : undefined;
  const method = tlsFiles ? (users ? "tls+password" : "tls") : users ? "password" : "username";
  const limit = brokerPacketLimit(maxPayload);

  const grants = new WeakMap<object, Grants>();
  // Client id -> the identity that holds it. MQTT lets a CONNECT with a client
  // id in use take the session over [MQTT-3.1.4-2]; across identities that
  // would let one hypervisor disconnect another's agent (firing its will, so
  // the NVE starts the agentHoldMs purge clock, PROTOCOL.md §3). A client id
  // therefore stays with the identity that has it while connected, and for
  // as long as its persistent session (cleanSession=false) exists.
  const owners = new Map<string, { identity: string; client: object; clean: boolean }>();
  const broker = await Aedes.createBroker({ heartbeatInterval: 60_000, connectTimeout: limits.connectTimeoutMs });
  // aedes' own in-memory persistence, wrapped before the first connection.
  capQueues((broker as unknown as { persistence: unknown }).persistence, limits,
    (clientId, why) => note(`queue|${clientId}`, `broker: session ${JSON.stringify(clientId)}: ${why}; a QoS 1 message for it is dropped`));

  // Every refusal of an identity answers CONNACK 5 "not authorized" (MQTT
  // 3.1.1 §3.2.2.3), as Mosquitto 2 does, so clients see the same code on
  // either broker; a client id the identity may not use answers 2 "identifier
  // rejected" [MQTT-3.1.3-9]; a full broker 3 "server unavailable".
  const refuse = (client: AedesClientLike, who: string, why: string, code: 2 | 3 | 5, cb: (e: any, ok: boolean | null) => void) => {
    log(`auth refused: method=${method} identity=${who} client=${JSON.stringify(client.id)} from=${client.conn.remoteAddress}: ${why}`);
    const err: Error & { returnCode?: number } = new Error(why);
    err.returnCode = code;
    cb(err, null);
  };

  broker.authenticate = (client: any, username: string | undefined, password: Buffer | undefined, cb: any) => {
    const c = client as AedesClientLike;
    let identity: string | undefined = username;
    if (tlsFiles) {
      // The handshake already required a certificate chaining to `ca`
      // (rejectUnauthorized); the identity is its subject CN.
      const cert = c.conn.getPeerCertificate?.();
      const cn = cert?.subject?.CN;
      const cnText = Array.isArray(cn) ? cn.join(",") : cn;
      if (!cnText || !isValidIdentity(cnText)) return refuse(c, JSON.stringify(cnText ?? null), `certificate CN ${JSON.stringify(cnText ?? null)} does not match ${IDENTITY_RE}`, 5, cb);
      if (username !== undefined && username !== cnText) return refuse(c, cnText, `username ${JSON.stringify(username)} differs from the certificate CN`, 5, cb);
      identity = cnText;
    } else if (username === undefined) {
      return refuse(c, "-", "no username (the username is the identity)", 5, cb);
    }
    if (!isValidIdentity(identity)) return refuse(c, JSON.stringify(identity), `username does not match ${IDENTITY_RE}`, 5, cb);
    const id = identity;
    const accept = () => {
      if (!clientIdAllowed(id, c.id)) return refuse(c, id, `client id ${JSON.stringify(c.id)} is not ${id} and does not start with "${id}-" (issue 10: a client id belongs to its identity)`, 2, cb);
      const owner = owners.get(c.id);
      if (owner && owner.identity !== id) return refuse(c, id, `client id ${JSON.stringify(c.id)} belongs to identity ${owner.identity}`, 5, cb);
      if (!owner) {
        // A new session (a takeover of one's own client id is not): within the
        // identity's share and the broker's total.
        let mine = 0;
        for (const x of owners.values()) if (x.identity === id) mine++;
        if (mine >= limits.maxSessionsPerIdentity) return refuse(c, id, `identity ${id} already holds ${mine} sessions (limit ${limits.maxSessionsPerIdentity}); end one (a clean session) first`, 3, cb);
        if (owners.size >= limits.maxConnections) return refuse(c, id, `the broker holds ${owners.size} sessions (limit ${limits.maxConnections})`, 3, cb);
      }
      owners.set(c.id, { identity: id, client, clean: (client as { clean?: boolean }).clean !== false });
      grants.set(client, grantsFor(id, roles));
      log(`auth ok: method=${method} identity=${id} client=${JSON.stringify(c.id)} from=${c.conn.remoteAddress}`);
      cb(null, true);
    };
    if (!users) return accept();
    verifyPassword(users, id, password).then((r) => {
      if (r === "ok") accept();
      else refuse(c, id, r, 5, cb);
    }, (e) => refuse(c, id, `password check failed: ${(e as Error).message}`, 5, cb));
  };

  broker.authorizePublish = (client: any, packet: any, cb: any) => {
    const g = client ? grants.get(client) : undefined;
    if (!g) return cb(new Error("publish without an authenticated identity"));
    const why = publishRefusal(g, packet.topic, packet.retain === true, packet.payload?.length ?? 0);
    if (why === null) return cb(null);
    note(`pub|${g.identity}|${why}`, `acl: ${g.identity} may not publish${packet.retain ? " retained" : ""} to ${JSON.stringify(packet.topic)} (${why}); dropped`);
    // [MQTT-3.3.5-2] a server that refuses a PUBLISH either acknowledges it as
    // usual or closes the connection. Closing would make MQTT.js resend the
    // stored QoS 1 message after every reconnect, forever; so, as Mosquitto
    // does, acknowledge and drop: the packet is redirected to a topic nobody
    // can subscribe to, never retained.
    packet.topic = DENIED_SINK;
    packet.retain = false;
    packet.payload = Buffer.alloc(0);
    cb(null);
  };

  broker.authorizeSubscribe = (client: any, sub: any, cb: any) => {
    const g = client ? grants.get(client) : undefined;
    if (g && canSubscribe(g, sub.topic)) return cb(null, sub);
    note(`sub|${g?.identity ?? "?"}`, `acl: ${g?.identity ?? "?"} may not subscribe to ${JSON.stringify(sub.topic)}; SUBACK 0x80`);
    cb(null, null); // negated: SUBACK return code 0x80 (MQTT 3.1.1 §3.9.3)
  };

  // Each delivered message is checked again, as Mosquitto checks READ per
  // message: retained messages and anything a granted filter might reach.
  broker.authorizeForward = (client: any, packet: any) => {
    const g = grants.get(client);
    return g && canRead(g, packet.topic) ? packet : null;
  };

  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  };
  const onConn = (conn: Socket) => {
    if (sockets.size >= limits.maxConnections) {
      // Before any byte is read: a flood of connections costs no more than this.
      note("maxConnections", `broker: connection from ${conn.remoteAddress} closed: ${sockets.size} open (limit ${limits.maxConnections})`);
      conn.destroy();
      return;
    }
    track(conn);
    // Small request/response packets: without TCP_NODELAY, Nagle's algorithm
    // and delayed ACKs add ~40 ms per hop.
    conn.setNoDelay?.(true);
    coalescePerTurn(conn); // one write of one buffer per turn (host/protocol/coalesce.ts)
    const client = broker.handle(conn as any, undefined as any) as unknown as AedesClientLike;
    limitPacketSize(client, limit, log);
    conn.once("close", () => {
      const owner = owners.get(client.id);
      if (owner && owner.client === client && owner.clean) owners.delete(client.id);
    });
  };

  let server: Server;
  if (tlsFiles) {
    server = createTlsServer({ ...secureOptions(tlsFiles), requestCert: true, rejectUnauthorized: true }, onConn);
    server.on("connection", track);
    server.on("tlsClientError", (err: Error, s: TLSSocket) => {
      log(`auth refused: method=${method} identity=- from=${s?.remoteAddress}: TLS handshake failed: ${err.message}`);
    });
  } else {
    server = createNetServer(onConn);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      reject(new BrokerConfigError(`broker: cannot listen on ${host}:${port}: ${e.code ?? e.message}`));
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  }).catch(async (e) => {
    await new Promise<void>((r) => broker.close(() => r()));
    throw e;
  });

  const addr = server.address();
  const realPort = typeof addr === "object" && addr ? addr.port : port;
  const hostInUrl = isIP(host) === 6 ? `[${host}]` : host;
  const url = `${tlsFiles ? "mqtts" : "mqtt"}://${hostInUrl}:${realPort}`;
  log(`broker: embedded MQTT 3.1.1 broker on ${url} (auth ${method}, packet limit ${limit} bytes)`);

  let closing: Promise<void> | undefined;
  return {
    url,
    port: realPort,
    reload() {
      // Both files read before either is used: a bad one changes nothing (issue 13 reload).
      const nextUsers = o.passwordFile ? readUsers(o.passwordFile) : undefined;
      const nextTls = o.tls ? { cert: readPem(o.tls.cert, "cert"), key: readPem(o.tls.key, "key"), ca: readPem(o.tls.ca, "ca") } : undefined;
      if (nextTls) {
        // A certificate that does not match its key (one file replaced, not
        // the other) or a file that is not PEM is refused here, before
        // anything changes: the running context stays, so clients keep
        // connecting (as Mosquitto keeps its old context on a failed reload).
        try {
          createSecureContext(secureOptions(nextTls));
        } catch (e) {
          throw new BrokerConfigError(`auth.tls: ${o.tls!.cert} with ${o.tls!.key} and ${o.tls!.ca}: ${(e as Error).message}; the running certificate is kept`);
        }
        // New handshakes take the new context; established connections keep
        // the session they negotiated (Node's tls.Server.setSecureContext).
        // The same options as at start: setSecureContext resets every context
        // option it is not given (minVersion among them).
        (server as unknown as { setSecureContext(o: object): void }).setSecureContext(secureOptions(nextTls));
        log(`broker: reloaded the TLS certificate, key and CA (${o.tls!.cert})`);
      }
      if (!nextUsers) return;
      users = nextUsers;
      log(`broker: reloaded ${o.passwordFile} (${users.size} users)`);
    },
    close() {
      closing ??= (async () => {
        await new Promise<void>((r) => broker.close(() => r()));
        const done = new Promise<void>((r) => server.close(() => r()));
        for (const s of sockets) s.destroy(); // half-done handshakes aedes never saw
        await done;
      })();
      return closing;
    },
  };
}
