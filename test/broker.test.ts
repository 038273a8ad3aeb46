// The brokers of issue 3 through real MQTT.js clients: the embedded aedes
// broker (MQTT 3.1.1) and Mosquitto 2 (MQTT 3.1.1 and 5) started with the
// generated acl_file and a password file from mosquitto_passwd. One table of
// topics runs through every broker and must give the same deliveries, which
// are the decisions of host/broker/acl.ts (PROTOCOL.md §1, §6). Then
// authentication: passwords (one file for both brokers) and TLS with client
// certificates (RFC 8394 Req-11, mutual authentication). Ephemeral ports only.
import { test } from "uvu";
import * as assert from "uvu/assert";
import mqtt, { type MqttClient, type IClientOptions } from "mqtt";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { createServer } from "node:net";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startEmbeddedBroker, brokerPacketLimit, BrokerConfigError, type BrokerOptions } from "../host/broker/embedded.js";
import { grantsFor, canPublish, canRead, canSubscribe, type AclRoles } from "../host/broker/acl.js";
import { startMosquitto, spawnMosquitto, freePort, type RunningMosquitto } from "./support/mosquitto.js";
import { mosquittoAclFile } from "../host/cli/mosquitto-acl.js";
import { mosquittoConfFile } from "../host/cli/mosquitto-conf.js";
import { makePki } from "./support/pki.js";

// ---- clients -------------------------------------------------------------

interface Got { topic: string; payload: string; retain: boolean }
type Client = MqttClient & { got: Got[]; errors: Error[] };

/**
 * The client's identity: the username, else its certificate's CN. Client ids
 * start with it (issue 10: the brokers refuse any other client id).
 */
function identityOf(o: IClientOptions): string {
  if (o.username) return o.username;
  if (o.cert) return /(?:^|\n)CN=([^\n,]+)/.exec(new X509Certificate(o.cert as Buffer).subject)?.[1] ?? "anon";
  return "anon";
}

function connectClient(url: string, o: IClientOptions): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 4000, clientId: `${identityOf(o)}-${Math.random().toString(16).slice(2, 10)}`, ...o }) as Client;
    c.got = [];
    c.errors = [];
    c.on("message", (topic, payload, packet) => c.got.push({ topic, payload: payload.toString(), retain: packet.retain }));
    let settled = false;
    const timer = setTimeout(() => fail(new Error("no CONNACK within 5 s")), 5000);
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      c.end(true);
      reject(e);
    };
    c.on("error", (e) => { c.errors.push(e); fail(e); });
    c.once("close", () => fail(new Error("connection closed before CONNACK")));
    c.once("connect", () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(c);
    });
  });
}

/** SUBACK return codes, one per filter (128 = refused, MQTT 3.1.1 §3.9.3). */
async function subscribe(c: MqttClient, filters: string[]): Promise<number[]> {
  try {
    const granted = await c.subscribeAsync(filters, { qos: 1 });
    return granted.map((g) => g.qos);
  } catch (e) {
    const g = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (!g) throw e;
    return g;
  }
}

async function waitFor(pred: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return pred();
}

/**
 * A "nothing more arrives" check waits for a later event instead of a fixed
 * sleep: `from` publishes a fence message on `topic` (QoS 1) and `to` waits for
 * it. Both brokers deliver a publisher's messages in order (MQTT 3.1.1 §4.6,
 * every topic an "Ordered Topic") and route a message to its subscribers before
 * they acknowledge it, so anything `from` sent before, or that was routed
 * before `from`'s fence was, has reached `to` by then. Returns what `to` got
 * before the fence, fences left out (they stay in `got`, payload `fence-…`).
 */
const isFence = (g: Got) => g.payload.startsWith("fence-");

async function fence(from: MqttClient, to: Client, topic: string): Promise<Got[]> {
  const payload = `fence-${Math.random().toString(36).slice(2, 10)}`;
  await from.publishAsync(topic, payload, { qos: 1 });
  assert.ok(await waitFor(() => to.got.some((g) => g.payload === payload)), `the fence on ${topic} arrived`);
  return to.got.slice(0, to.got.findIndex((g) => g.payload === payload)).filter((g) => !isFence(g));
}

/** Closes every client and broker it was given, in reverse order, whatever happened. */
class Cleanup {
  private items: (() => Promise<unknown> | unknown)[] = [];
  add<T extends { close?: () => Promise<void> } | Client>(x: T): T {
    if ("endAsync" in x) this.items.push(() => (x as Client).endAsync(true).catch(() => {}));
    else this.items.push(() => (x as { close: () => Promise<void> }).close());
    return x;
  }
  fn(f: () => unknown): void { this.items.push(f); }
  async run(): Promise<void> {
    for (const f of this.items.reverse()) await f();
  }
}

// ---- the cast and the table ----------------------------------------------

const ROLES: AclRoles = { nves: ["nve-a", "nve-b"], imas: ["ima"], operators: ["alice"] };
const IDS = ["hv-1", "hv-2", "nve-a", "nve-b", "ima", "alice"];
const PASSWORDS: Record<string, string> = Object.fromEntries(IDS.map((id) => [id, `pw-${id}`]));

const TOPICS = [
  "nvo3/v1/nve/nve-a/req/hv-1", "nvo3/v1/nve/nve-a/req/hv-2", "nvo3/v1/nve/nve-b/req/hv-1",
  "nvo3/v1/nve/nve-a/status/hv-1", "nvo3/v1/nve/nve-a/status/hv-2", "nvo3/v1/nve/nve-a/status", "nvo3/v1/nve/nve-b/status",
  "nvo3/v1/hv/hv-1/rsp", "nvo3/v1/hv/hv-2/rsp", "nvo3/v1/hv/hv-1/evt", "nvo3/v1/hv/hv-2/evt", "nvo3/v1/hv/hv-1/other",
  "nvo3/v1/ima/req/nve-a", "nvo3/v1/ima/req/alice", "nvo3/v1/ima/req/ima", "nvo3/v1/ima/rsp/nve-a", "nvo3/v1/ima/rsp/alice",
  "nvo3/v1/ima/vn/100", "nvo3/v1/ima/vtep/100/nve-a", "nvo3/v1/ima/bind/100/02:00:5e:00:00:01", "nvo3/v1/ima/other",
  "nvo3/v1/other", "other/topic",
];
// Filters that try to read beyond the grants. The embedded broker refuses them
// (SUBACK 0x80); Mosquitto 2 grants them but checks READ on every message, so
// on both nothing beyond the grants is delivered.
const PROBES = ["#", "nvo3/v1/#", "nvo3/v1/hv/+/rsp", "nvo3/v1/nve/+/req/+", "nvo3/v1/nve/+/status/+", "nvo3/v1/ima/#"];

interface Broker { name: string; url: string; protocolVersion: 4 | 5; embedded: boolean; log: () => string; close(): Promise<void> }

async function embedded(o: Partial<BrokerOptions> = {}): Promise<Broker & { lines: string[]; reload(): void }> {
  const lines: string[] = [];
  const b = await startEmbeddedBroker({ port: 0, ...ROLES, log: (l) => lines.push(l), ...o } as BrokerOptions);
  return { name: "embedded", url: b.url, protocolVersion: 4, embedded: true, lines, log: () => lines.join("\n"), close: () => b.close(), reload: () => b.reload() };
}

async function mosquitto(v: 4 | 5, o: { tls?: boolean; maxPayload?: number } = {}): Promise<Broker & { m: RunningMosquitto }> {
  const m = await startMosquitto({ users: PASSWORDS, nves: ROLES.nves as string[], imas: ROLES.imas as string[], operators: ROLES.operators as string[], ...o });
  return { name: `mosquitto v${v === 4 ? "3.1.1" : "5"}`, url: m.url, protocolVersion: v, embedded: false, m, log: () => m.log(), close: () => m.close() };
}

const key = (g: { sub: string; pub: string; topic: string }) => `${g.sub} <- ${g.pub} ${g.topic}`;

/**
 * Every identity subscribes to its read grants plus the probes, then
 * publishes every topic of the table. Returns who received what, the SUBACK
 * codes of the probes and which publishes were refused at PUBACK (MQTT 5).
 */
async function runMatrix(b: Broker, clean: Cleanup) {
  const clients = new Map<string, Client>();
  for (const id of IDS) {
    clients.set(id, clean.add(await connectClient(b.url, { username: id, password: PASSWORDS[id], protocolVersion: b.protocolVersion, clientId: `${id}-m` })));
  }
  const probeCodes = new Map<string, number[]>();
  for (const id of IDS) {
    const g = grantsFor(id, ROLES);
    const granted = await subscribe(clients.get(id)!, g.read);
    assert.ok(granted.every((q) => q === 1), `${b.name}: ${id} may subscribe to its grants ${g.read.join(" ")}: ${granted}`);
    probeCodes.set(id, await subscribe(clients.get(id)!, PROBES));
  }
  const refused = new Set<string>();
  for (const pub of IDS) {
    for (const topic of TOPICS) {
      try {
        await clients.get(pub)!.publishAsync(topic, `${pub}|${topic}`, { qos: 1 });
      } catch (e) {
        refused.add(`${pub} ${topic}`);
        assert.match((e as Error).message, /Not authorized/i, `${b.name}: ${pub} -> ${topic}`);
      }
    }
  }
  const expected = new Set<string>();
  for (const pub of IDS) for (const topic of TOPICS) for (const sub of IDS) {
    if (canPublish(grantsFor(pub, ROLES), topic) && canRead(grantsFor(sub, ROLES), topic)) expected.add(key({ sub, pub, topic }));
  }
  const received = () => {
    const s = new Set<string>();
    for (const [sub, c] of clients) for (const g of c.got) if (!isFence(g)) s.add(key({ sub, pub: g.payload.split("|")[0], topic: g.topic }));
    return s;
  };
  await waitFor(() => received().size >= expected.size);
  // Anything that should not arrive has had its chance too: every publish above
  // was acknowledged, hence routed, before these fences are sent; each
  // subscriber gets one on a topic it reads (from an identity that may write it).
  for (const [sub, c] of clients) {
    const via = TOPICS.flatMap((topic) => IDS.filter((pub) => canPublish(grantsFor(pub, ROLES), topic) && canRead(grantsFor(sub, ROLES), topic)).map((pub) => ({ pub, topic })))[0];
    assert.ok(via, `${b.name}: ${sub} reads some topic of the table`);
    await fence(clients.get(via.pub)!, c, via.topic);
  }
  return { expected, received: received(), probeCodes, refused };
}

function assertMatrix(b: Broker, r: Awaited<ReturnType<typeof runMatrix>>): void {
  const missing = [...r.expected].filter((k) => !r.received.has(k));
  const extra = [...r.received].filter((k) => !r.expected.has(k));
  assert.equal(missing, [], `${b.name}: deliveries missing`);
  assert.equal(extra, [], `${b.name}: deliveries the ACL forbids`);
  // the decisions the table must show, stated from PROTOCOL.md §1/§6 directly
  const must = [
    "nve-a <- hv-1 nvo3/v1/nve/nve-a/req/hv-1", "hv-1 <- nve-a nvo3/v1/hv/hv-1/rsp", "hv-2 <- nve-b nvo3/v1/hv/hv-2/evt",
    "hv-1 <- nve-a nvo3/v1/nve/nve-a/status", "ima <- nve-a nvo3/v1/nve/nve-a/status", "nve-a <- hv-1 nvo3/v1/nve/nve-a/status/hv-1",
    "ima <- nve-a nvo3/v1/ima/req/nve-a", "ima <- alice nvo3/v1/ima/req/alice", "nve-a <- ima nvo3/v1/ima/rsp/nve-a",
    "alice <- ima nvo3/v1/ima/rsp/alice", "alice <- ima nvo3/v1/ima/vn/100", "nve-b <- ima nvo3/v1/ima/bind/100/02:00:5e:00:00:01",
  ];
  const mustNot = [
    "nve-a <- hv-2 nvo3/v1/nve/nve-a/req/hv-1", // a hv cannot write another hv's request topic
    "hv-2 <- nve-a nvo3/v1/hv/hv-1/rsp",        // nor read another hv's responses
    "nve-a <- hv-2 nvo3/v1/nve/nve-a/status/hv-1",
    "hv-1 <- hv-1 nvo3/v1/nve/nve-a/req/hv-1",  // an agent does not read requests
    "nve-b <- hv-1 nvo3/v1/nve/nve-a/req/hv-1", // nor does another NVE
    "ima <- nve-a nvo3/v1/ima/req/alice",       // an NVE cannot pose as an operator
    "nve-a <- nve-b nvo3/v1/ima/rsp/nve-a",     // only the IMA answers
    "alice <- ima nvo3/v1/ima/rsp/nve-a", "alice <- ima nvo3/v1/ima/bind/100/02:00:5e:00:00:01",
    "hv-1 <- nve-b nvo3/v1/nve/nve-a/status",   // an NVE writes only its own status
  ];
  for (const k of must) assert.ok(r.received.has(k), `${b.name}: ${k}`);
  for (const k of mustNot) assert.not.ok(r.received.has(k), `${b.name}: ${k}`);
  if (b.embedded) {
    for (const id of IDS) {
      const g = grantsFor(id, ROLES);
      assert.equal(r.probeCodes.get(id), PROBES.map((f) => (canSubscribe(g, f) ? 1 : 128)), `${b.name}: SUBACK codes of ${id}'s probes`);
    }
    assert.equal(r.probeCodes.get("hv-1"), PROBES.map(() => 128), "an agent's wildcards beyond its tree are refused");
  }
  if (b.protocolVersion === 5) {
    // Mosquitto answers a refused MQTT 5 PUBLISH with PUBACK 0x87 (not authorized)
    for (const pub of IDS) for (const topic of TOPICS) {
      assert.is(r.refused.has(`${pub} ${topic}`), !canPublish(grantsFor(pub, ROLES), topic), `${b.name}: PUBACK of ${pub} -> ${topic}`);
    }
  } else {
    assert.is(r.refused.size, 0, `${b.name}: MQTT 3.1.1 refusals are acknowledged and dropped [MQTT-3.3.5-2]`);
  }
}

const matrices = new Map<string, Set<string>>();

for (const which of ["embedded", "mosquitto4", "mosquitto5"] as const) {
  test(`ACL table through the ${which === "embedded" ? "embedded broker (MQTT 3.1.1)" : `Mosquitto (MQTT ${which === "mosquitto4" ? "3.1.1" : "5"})`}: each role reads and writes exactly its topics`, async () => {
    const clean = new Cleanup();
    try {
      let b: Broker;
      if (which === "embedded") {
        // the password file is written by the real mosquitto_passwd, through the Mosquitto harness
        const m = clean.add(await mosquitto(4));
        b = clean.add(await embedded({ passwordFile: m.m.passwordFile }));
      } else {
        b = clean.add(await mosquitto(which === "mosquitto4" ? 4 : 5));
      }
      try {
        const r = await runMatrix(b, clean);
        assertMatrix(b, r);
        matrices.set(which, r.received);
      } catch (e) {
        console.error(`${b.name} log (tail):\n${b.log().slice(-4000)}`);
        throw e;
      }
    } finally {
      await clean.run();
    }
  });
}

test("the three brokers delivered exactly the same messages", () => {
  assert.is(matrices.size, 3, "the three table runs passed");
  const [a, b, c] = [...matrices.values()].map((s) => [...s].sort());
  assert.equal(b, a);
  assert.equal(c, a);
  assert.ok(a.length > 30, `a meaningful table (${a.length} deliveries)`);
});

// ---- retained messages and wills -------------------------------------------

for (const which of ["embedded", "mosquitto4", "mosquitto5"] as const) {
  test(`retained status and wills obey the ACL (${which})`, async () => {
    const clean = new Cleanup();
    try {
      const b = clean.add(which === "embedded" ? await embedded() : await mosquitto(which === "mosquitto4" ? 4 : 5));
      const auth = (id: string) => ({ username: id, password: PASSWORDS[id], protocolVersion: b.protocolVersion });
      const nve = clean.add(await connectClient(b.url, { ...auth("nve-a"), clientId: "nve-a-r" }));
      await subscribe(nve, ["nvo3/v1/nve/nve-a/#"]);
      await nve.publishAsync("nvo3/v1/nve/nve-a/status", JSON.stringify({ state: "online" }), { qos: 1, retain: true });
      const hv1 = clean.add(await connectClient(b.url, { ...auth("hv-1"), clientId: "hv-1-r",
        will: { topic: "nvo3/v1/nve/nve-a/status/hv-1", payload: Buffer.from("hv-1 offline"), qos: 1, retain: true } }));
      await hv1.publishAsync("nvo3/v1/nve/nve-a/status/hv-1", "hv-1 online", { qos: 1, retain: true });
      // hv-2 tries to leave a will on hv-1's status topic: it must never be published
      const hv2 = clean.add(await connectClient(b.url, { ...auth("hv-2"), clientId: "hv-2-r",
        will: { topic: "nvo3/v1/nve/nve-a/status/hv-1", payload: Buffer.from("spoofed offline"), qos: 1, retain: true } }));
      await waitFor(() => nve.got.some((g) => g.payload === "hv-1 online"));
      // a late subscriber with wide filters gets the retained NVE status and nothing of hv-1's
      const late = clean.add(await connectClient(b.url, { ...auth("hv-2"), clientId: "hv-2-r-late" }));
      await subscribe(late, ["nvo3/v1/nve/+/status", "nvo3/v1/nve/+/status/+", "nvo3/v1/#"]);
      assert.ok(await waitFor(() => late.got.length >= 1), "retained NVE status delivered");
      // the retained messages of a SUBSCRIBE are sent with it, before a later
      // publish on a topic it matches (a non-retained fence from the NVE)
      const retainedToLate = await fence(nve, late, "nvo3/v1/nve/nve-a/status");
      // (Mosquitto sends a retained message once per matching filter of the SUBSCRIBE)
      assert.equal([...new Set(retainedToLate.map((g) => `${g.topic} retain=${g.retain}`))], ["nvo3/v1/nve/nve-a/status retain=true"]);
      // both agents vanish without DISCONNECT: their wills fire
      (hv2 as any).stream.destroy();
      (hv1 as any).stream.destroy();
      assert.ok(await waitFor(() => nve.got.some((g) => g.payload === "hv-1 offline")), "hv-1's will reached the NVE");
      // hv-2's session is over once its client id connects again (the broker
      // ended it on the lost connection, or ends it now on the takeover: either
      // way its will was decided before this CONNACK); a fence from the new
      // session then comes after anything that will would have published
      const hv2Again = clean.add(await connectClient(b.url, { ...auth("hv-2"), clientId: "hv-2-r" }));
      await fence(hv2Again, nve, "nvo3/v1/nve/nve-a/status/hv-2");
      assert.not.ok(nve.got.some((g) => g.payload === "spoofed offline"), "hv-2's will on hv-1's topic was dropped");
      // and it did not overwrite the retained message either
      const again = clean.add(await connectClient(b.url, { ...auth("nve-a"), clientId: "nve-a-r-2" }));
      await subscribe(again, ["nvo3/v1/nve/nve-a/status/hv-1"]);
      assert.ok(await waitFor(() => again.got.length >= 1));
      assert.is(again.got[0].payload, "hv-1 offline");
    } finally {
      await clean.run();
    }
  });
}

// ---- password authentication ---------------------------------------------

for (const which of ["embedded", "mosquitto4", "mosquitto5"] as const) {
  test(`password authentication (${which}): right password in, wrong password / unknown user / no password out`, async () => {
    const clean = new Cleanup();
    try {
      const m = clean.add(await mosquitto(which === "mosquitto5" ? 5 : 4));
      const b = which === "embedded" ? clean.add(await embedded({ passwordFile: m.m.passwordFile })) : m;
      const v = { protocolVersion: b.protocolVersion };
      const ok = clean.add(await connectClient(b.url, { ...v, username: "hv-1", password: "pw-hv-1" }));
      assert.equal(await subscribe(ok, ["nvo3/v1/hv/hv-1/#"]), [1]);
      const refusals: [string, IClientOptions][] = [
        ["wrong password", { username: "hv-1", password: "pw-hv-2" }],
        ["unknown user", { username: "hv-9", password: "pw-hv-1" }],
        ["no password", { username: "hv-1" }],
        ["no username", {}],
      ];
      for (const [what, o] of refusals) {
        const err = await connectClient(b.url, { ...v, ...o }).then(() => null, (e: Error & { code?: number }) => e);
        assert.ok(err, `${which}: ${what} must be refused`);
        // CONNACK 5 (3.1.1) or 0x86/0x87 (5): not authorized / bad user name or password
        assert.match(err!.message, /Not authorized|Bad User Name or Password/i, `${which}: ${what}: ${err!.message}`);
      }
      if (which === "embedded") {
        const log = b.log();
        assert.match(log, /auth ok: method=password identity=hv-1 /);
        assert.match(log, /auth refused: method=password identity=hv-1 .*: bad-password/);
        assert.match(log, /auth refused: method=password identity=hv-9 .*: unknown-user/);
        assert.match(log, /auth refused: method=password identity=hv-1 .*: no-password/);
        assert.match(log, /auth refused: method=password identity=- .*: no username/);
      }
    } finally {
      await clean.run();
    }
  });
}

test("embedded: an older $6$ (SHA-512) password file from mosquitto_passwd -H sha512 works too", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-broker-"));
  const clean = new Cleanup();
  try {
    const f = join(dir, "passwd");
    execFileSync("mosquitto_passwd", ["-H", "sha512", "-c", "-b", f, "nve-a", "old-style"]);
    const b = clean.add(await embedded({ passwordFile: f }));
    const c = clean.add(await connectClient(b.url, { username: "nve-a", password: "old-style" }));
    assert.equal(await subscribe(c, ["nvo3/v1/nve/nve-a/#"]), [1], "identity nve-a has the NVE role");
    const bad = await connectClient(b.url, { username: "nve-a", password: "old-style!" }).then(() => null, (e: Error) => e);
    assert.ok(bad);
  } finally {
    await clean.run();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("embedded: reload() re-reads the password file; a broken file is refused and the old one stays", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-broker-"));
  const clean = new Cleanup();
  try {
    const f = join(dir, "passwd");
    execFileSync("mosquitto_passwd", ["-c", "-b", f, "hv-1", "one"]);
    const b = clean.add(await embedded({ passwordFile: f }));
    const refused = (u: string, p: string) => connectClient(b.url, { username: u, password: p }).then((c) => { c.end(true); return false; }, () => true);
    execFileSync("mosquitto_passwd", ["-b", f, "hv-2", "two"]);
    assert.ok(await refused("hv-2", "two"), "not before reload");
    b.reload();
    assert.not.ok(await refused("hv-2", "two"), "after reload");
    writeFileSync(f, "hv-1:plaintext\n");
    assert.throws(() => b.reload(), /auth\.passwordFile: .*passwd:1: user hv-1: unsupported hash/);
    assert.not.ok(await refused("hv-1", "one"), "the previous file still applies");
  } finally {
    await clean.run();
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- TLS with client certificates (Req-11) -----------------------------------

test("embedded TLS (Req-11): a certificate from our CA is required, its CN is the identity", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pki-"));
  const clean = new Cleanup();
  try {
    const pki = makePki(join(dir, "ours"), ["hv-1", "nve-a"]);
    const foreign = makePki(join(dir, "foreign"), ["hv-1"], "someone else's CA");
    const b = clean.add(await embedded({ tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caFile } }));
    assert.match(b.url, /^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const ca = readFileSync(pki.caFile);
    const as = (p: typeof pki, id: string) => ({ ca, cert: readFileSync(p.certFor(id).cert), key: readFileSync(p.certFor(id).key) });

    const nve = clean.add(await connectClient(b.url, { ...as(pki, "nve-a") }));
    assert.equal(await subscribe(nve, ["nvo3/v1/nve/nve-a/#"]), [1], "CN nve-a has the NVE role");
    const hv = clean.add(await connectClient(b.url, { ...as(pki, "hv-1"), username: "hv-1" }));
    assert.equal(await subscribe(hv, ["nvo3/v1/hv/hv-1/#", "nvo3/v1/hv/hv-2/#"]), [1, 128], "CN hv-1 reads only hv-1's tree");
    await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-1", "from hv-1", { qos: 1 });
    await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-2", "posing as hv-2", { qos: 1 });
    // the spoofed publish, had it passed, would arrive before hv-1's next one
    assert.equal((await fence(hv, nve, "nvo3/v1/nve/nve-a/req/hv-1")).map((g) => g.payload), ["from hv-1"]);

    const refusals: [string, IClientOptions][] = [
      ["no client certificate", { ca }],
      ["a certificate from another CA", { ca, cert: readFileSync(foreign.certFor("hv-1").cert), key: readFileSync(foreign.certFor("hv-1").key) }],
      ["a username other than the CN", { ...as(pki, "hv-1"), username: "hv-2" }],
    ];
    for (const [what, o] of refusals) {
      const err = await connectClient(b.url, o).then(() => null, (e: Error) => e);
      assert.ok(err, `${what} must be refused`);
    }
    // the client checks the server too (mutual): a server cert from another CA is refused by the client
    const foreignServer = clean.add(await embedded({ tls: { cert: foreign.serverCert, key: foreign.serverKey, ca: pki.caFile } }));
    const err = await connectClient(foreignServer.url, as(pki, "hv-1")).then(() => null, (e: Error) => e);
    assert.ok(err, "a client refuses a server whose certificate is not from its CA");
    const log = b.log();
    assert.match(log, /auth ok: method=tls identity=nve-a /);
    assert.match(log, /auth ok: method=tls identity=hv-1 /);
    assert.match(log, /auth refused: method=tls identity=- from=.*TLS handshake failed/);
    assert.match(log, /auth refused: method=tls identity=hv-1 .*username "hv-2" differs from the certificate CN/);
  } finally {
    await clean.run();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("embedded TLS: an NVE can serve its broker and connect to it with one certificate (CN = its name)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pki-"));
  const clean = new Cleanup();
  try {
    const pki = makePki(dir, ["nve-a"]);
    const own = pki.certFor("nve-a");
    const b = clean.add(await embedded({ tls: { cert: own.cert, key: own.key, ca: pki.caFile } }));
    const nve = clean.add(await connectClient(b.url, { ca: readFileSync(pki.caFile), cert: readFileSync(own.cert), key: readFileSync(own.key) }));
    assert.equal(await subscribe(nve, ["nvo3/v1/nve/nve-a/#", "nvo3/v1/nve/nve-b/#"]), [1, 128]);
  } finally {
    await clean.run();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("embedded TLS + password file: both the certificate and the password must match", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pki-"));
  const clean = new Cleanup();
  try {
    const pki = makePki(join(dir, "ours"), ["hv-1"]);
    const f = join(dir, "passwd");
    execFileSync("mosquitto_passwd", ["-c", "-b", f, "hv-1", "pw-hv-1"]);
    const b = clean.add(await embedded({ passwordFile: f, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caFile } }));
    const tlsOpts = { ca: readFileSync(pki.caFile), cert: readFileSync(pki.certFor("hv-1").cert), key: readFileSync(pki.certFor("hv-1").key) };
    clean.add(await connectClient(b.url, { ...tlsOpts, username: "hv-1", password: "pw-hv-1" }));
    assert.ok(await connectClient(b.url, { ...tlsOpts, username: "hv-1", password: "wrong" }).then(() => false, () => true), "wrong password");
    assert.ok(await connectClient(b.url, { ...tlsOpts }).then(() => false, () => true), "certificate alone");
    assert.match(b.log(), /auth ok: method=tls\+password identity=hv-1/);
    assert.match(b.log(), /auth refused: method=tls\+password identity=hv-1 .*bad-password/);
  } finally {
    await clean.run();
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const v of [4, 5] as const) {
  test(`Mosquitto TLS (Req-11, MQTT ${v === 4 ? "3.1.1" : "5"}): our CA's certificate required, CN is the identity the ACL uses`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-pki-"));
    const clean = new Cleanup();
    try {
      const b = clean.add(await mosquitto(v, { tls: true }));
      const pki = b.m.pki!;
      const foreign = makePki(join(dir, "foreign"), ["hv-1"], "someone else's CA");
      const ca = readFileSync(pki.caFile);
      const as = (id: string) => ({ ca, cert: readFileSync(pki.certFor(id).cert), key: readFileSync(pki.certFor(id).key), protocolVersion: v });
      const nve = clean.add(await connectClient(b.url, as("nve-a")));
      assert.equal(await subscribe(nve, ["nvo3/v1/nve/nve-a/#"]), [1]);
      const hv = clean.add(await connectClient(b.url, as("hv-1")));
      await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-1", "from hv-1", { qos: 1 });
      const spoof = await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-2", "posing as hv-2", { qos: 1 }).then(() => "acked", (e: Error) => e.message);
      assert.equal((await fence(hv, nve, "nvo3/v1/nve/nve-a/req/hv-1")).map((g) => g.payload), ["from hv-1"]);
      if (v === 5) assert.match(spoof, /Not authorized/i);
      for (const [what, o] of [["no client certificate", { ca, protocolVersion: v }],
        ["a certificate from another CA", { ca, cert: readFileSync(foreign.certFor("hv-1").cert), key: readFileSync(foreign.certFor("hv-1").key), protocolVersion: v }],
      ] as [string, IClientOptions][]) {
        const err = await connectClient(b.url, o).then(() => null, (e: Error) => e);
        assert.ok(err, `${what} must be refused`);
      }
    } finally {
      await clean.run();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("embedded: a client id stays with its identity (no takeover of another hypervisor's session or will)", async () => {
  const clean = new Cleanup();
  try {
    const b = clean.add(await embedded());
    const nve = clean.add(await connectClient(b.url, { username: "nve-a" }));
    await subscribe(nve, ["nvo3/v1/nve/nve-a/#"]);
    const will = { topic: "nvo3/v1/nve/nve-a/status/hv-1", payload: Buffer.from("hv-1 offline"), qos: 1 as const };
    const hv1 = clean.add(await connectClient(b.url, { username: "hv-1", clientId: "hv-1-agent", will }));
    let hv1Closed = false;
    hv1.on("close", () => { hv1Closed = true; });
    // issue 10: a client id is the identity or starts with `{identity}-`
    for (const id of ["hv-1-agent", "hv-1", "agent", "hv-10", ""]) {
      const stolen = await connectClient(b.url, { username: "hv-2", clientId: id }).then(() => null, (e: Error) => e);
      assert.match(String(stolen?.message), /Identifier rejected/i, `hv-2 with client id ${JSON.stringify(id)}`);
    }
    // each refusal came with its CONNACK, after any takeover it would have
    // made: hv-1's connection still carries a fence, and no will came before it
    assert.equal(await fence(hv1, nve, "nvo3/v1/nve/nve-a/status/hv-1"), [], "hv-1's will did not fire");
    assert.not.ok(hv1Closed, "hv-1 keeps its connection");
    assert.match(b.log(), /auth refused: method=username identity=hv-2 .*client id "hv-1-agent" is not hv-2 and does not start with "hv-2-"/);
    // the same identity may take its own session over (an agent reconnecting)
    const again = clean.add(await connectClient(b.url, { username: "hv-1", clientId: "hv-1-agent" }));
    assert.ok(await waitFor(() => hv1Closed), "the older connection of hv-1 is replaced");
    await again.endAsync();
    // its own name as client id, and any `hv-2-…`, are hv-2's
    for (const id of ["hv-2", "hv-2-x"]) (await connectClient(b.url, { username: "hv-2", clientId: id })).end(true);
    // a persistent session (cleanSession=false) keeps its id with its identity
    const p = await connectClient(b.url, { username: "hv-1", clientId: "hv-1-p", clean: false });
    await p.endAsync();
    clean.add(await connectClient(b.url, { username: "hv-1", clientId: "hv-1-p", clean: false }));
  } finally {
    await clean.run();
  }
});

// ---- sizes, configuration errors -----------------------------------------

for (const which of ["embedded", "mosquitto4", "mosquitto5"] as const) {
  test(`payloads above maxPayload still reach the NVE (it answers too-large); beyond the broker limit the sender is cut off (${which})`, async () => {
    const clean = new Cleanup();
    try {
      const maxPayload = 1024;
      const b = clean.add(which === "embedded" ? await embedded({ maxPayload }) : await mosquitto(which === "mosquitto4" ? 4 : 5, { maxPayload }));
      const auth = (id: string) => ({ username: id, password: PASSWORDS[id], protocolVersion: b.protocolVersion });
      const nve = clean.add(await connectClient(b.url, auth("nve-a")));
      await subscribe(nve, ["nvo3/v1/nve/nve-a/#"]);
      const hv = clean.add(await connectClient(b.url, auth("hv-1")));
      const big = "x".repeat(2 * maxPayload);
      await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-1", big, { qos: 1 });
      assert.ok(await waitFor(() => nve.got.some((g) => g.payload === big)), "2 × maxPayload is delivered");
      const huge = Buffer.alloc(brokerPacketLimit(maxPayload) + 1, 0x61);
      const closed = new Promise<void>((r) => hv.once("close", () => r()));
      hv.publish("nvo3/v1/nve/nve-a/req/hv-1", huge, { qos: 0 });
      const cut = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
      assert.ok(cut, "the sender of a packet beyond the broker limit is disconnected");
      // the broker was done with the packet when it cut the sender off: a fence
      // sent on the same path afterwards comes after it, had it been delivered
      const hvAgain = clean.add(await connectClient(b.url, auth("hv-1")));
      await fence(hvAgain, nve, "nvo3/v1/nve/nve-a/req/hv-1");
      assert.not.ok(nve.got.some((g) => g.payload.length === huge.length), "and the packet is not delivered");
    } finally {
      await clean.run();
    }
  });
}

test("embedded: loopback only without auth, clear errors for bad options, port 0 gives the real port", async () => {
  const refuse = async (o: Partial<BrokerOptions>, re: RegExp) => {
    const e = await startEmbeddedBroker({ port: 0, ...o }).then(async (b) => { await b.close(); return null; }, (err: Error) => err);
    assert.ok(e instanceof BrokerConfigError, `expected a BrokerConfigError for ${JSON.stringify(o)}, got ${e}`);
    assert.match(e!.message, re);
  };
  await refuse({ host: "0.0.0.0" }, /refusing to listen on 0\.0\.0\.0 without authentication/);
  await refuse({ host: "192.0.2.1" }, /refusing to listen on 192\.0\.2\.1 without authentication/);
  await refuse({ nves: ["nve a"] }, /nves: identity "nve a"/);
  await refuse({ operators: ["x/y"] }, /operators: identity "x\/y"/);
  await refuse({ tls: { cert: "/nonexistent/nvl.crt", key: "/nonexistent/nvl.key", ca: "/nonexistent/ca.crt" } }, /auth\.tls\.cert: cannot read \/nonexistent\/nvl\.crt \(ENOENT\)/);
  await refuse({ maxPayload: 0 }, /maxPayload 0/);
  await refuse({ limits: { maxConnections: 0 } }, /broker: broker limits: maxConnections 0 is not a positive integer/);
  await refuse({ limits: { connectTimeoutMs: 1.5 } }, /connectTimeoutMs 1\.5 is not a positive integer/);
  await refuse({ hypervisors: { "nve-a": ["hv 1"] } }, /hypervisors of nve-a: identity "hv 1"/);
  await refuse({ port: 70000 }, /port 70000/);
  await refuse({ passwordFile: "/nonexistent/nvl-passwd" }, /^auth\.passwordFile: \/nonexistent\/nvl-passwd: cannot read the password file \(ENOENT\)/);
  // a taken port is a clear error, not a crash
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
  try {
    const port = (blocker.address() as { port: number }).port;
    await refuse({ port }, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
  } finally {
    await new Promise<void>((r) => blocker.close(() => r()));
  }
  const b = await startEmbeddedBroker({ port: 0, host: "::1" }).catch(() => null);
  if (b) { // IPv6 loopback, where the host has it
    try {
      assert.match(b.url, /^mqtt:\/\/\[::1\]:\d+$/);
      assert.ok(b.port > 0);
      const c = await connectClient(b.url, { username: "hv-1" });
      await c.endAsync();
    } finally {
      await b.close();
    }
  }
  const b4 = await startEmbeddedBroker({ port: 0 });
  try {
    assert.ok(b4.port > 0 && b4.url === `mqtt://127.0.0.1:${b4.port}`);
  } finally {
    await b4.close();
  }
});

// ---- the files shipped for users ------------------------------------------

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", ".."); // dist/test -> repo root

/**
 * A Mosquitto run from a configuration file this test writes in a temp dir
 * (`start`: the file's text and the TCP ports to wait for, with the log and
 * root's user lines put first); its log printed on failure, the clients, the
 * broker and the dir removed after, even on failure.
 */
async function withConfMosquitto(prefix: string, body: (dir: string, clean: Cleanup, start: (conf: string, ports: number[]) => Promise<void>) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const clean = new Cleanup();
  let proc: Awaited<ReturnType<typeof spawnMosquitto>> | undefined;
  try {
    await body(dir, clean, async (conf, ports) => {
      writeFileSync(join(dir, "mosquitto.conf"), `${process.getuid?.() === 0 ? "user root\n" : ""}log_dest stderr\nlog_type all\n${conf}`);
      proc = await spawnMosquitto(join(dir, "mosquitto.conf"), ports, dir);
    });
  } catch (e) {
    if (proc) console.error(proc.log().slice(-3000));
    throw e;
  } finally {
    await clean.run();
    if (proc) await proc.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("etc/mosquitto: acl.example is what the generator writes; nvedge.conf runs with a certificate on 8883 and passwords on loopback 1883", async () => {
  const shippedAcl = readFileSync(join(repo, "etc", "mosquitto", "acl.example"), "utf8");
  assert.is(shippedAcl, mosquittoAclFile({ nves: ["nve-a", "nve-b"], hypervisors: { "nve-a": ["hv-1", "hv-2"], "nve-b": ["hv-3"] }, imas: ["ima"], operators: ["admin"] }), "regenerate etc/mosquitto/acl.example");
  assert.is(readFileSync(join(repo, "etc", "mosquitto", "nvedge.conf"), "utf8"), mosquittoConfFile(), "regenerate etc/mosquitto/nvedge.conf (node dist/host/cli/mosquitto-conf.js)");
  await withConfMosquitto("nvl-mosquitto-shipped-", async (dir, clean, start) => {
    // lay out /etc/mosquitto/nvedge/ as the README says, in a temp dir
    const pki = makePki(join(dir, "pki"), ["hv-1", "nve-a"]);
    copyFileSync(pki.caFile, join(dir, "ca.crt"));
    copyFileSync(pki.serverCert, join(dir, "server.crt"));
    copyFileSync(pki.serverKey, join(dir, "server.key"));
    execFileSync("mosquitto_passwd", ["-c", "-b", join(dir, "passwd"), "nve-a", "pw-nve-a"]);
    writeFileSync(join(dir, "acl"), shippedAcl);
    const [tlsPort, plainPort] = [await freePort(), await freePort()];
    let conf = readFileSync(join(repo, "etc", "mosquitto", "nvedge.conf"), "utf8");
    for (const [from, to] of [
      ["/etc/mosquitto/nvedge/", `${dir}/`], ["listener 8883\n", `listener ${tlsPort} 127.0.0.1\n`],
      ["listener 1883 127.0.0.1\n", `listener ${plainPort} 127.0.0.1\n`], ["persistence true\n", "persistence false\n"],
      ["persistence_location /var/lib/mosquitto/\n", ""],
    ]) {
      assert.ok(conf.includes(from), `nvedge.conf has ${JSON.stringify(from)}`);
      conf = conf.replaceAll(from, to);
    }
    await start(conf, [tlsPort, plainPort]);
    const ca = readFileSync(pki.caFile);
    const hv = clean.add(await connectClient(`mqtts://127.0.0.1:${tlsPort}`, { ca, cert: readFileSync(pki.certFor("hv-1").cert), key: readFileSync(pki.certFor("hv-1").key), protocolVersion: 5 }));
    const nve = clean.add(await connectClient(`mqtt://127.0.0.1:${plainPort}`, { username: "nve-a", password: "pw-nve-a", protocolVersion: 5 }));
    assert.equal(await subscribe(nve, ["nvo3/v1/nve/nve-a/#"]), [1]);
    await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-1", "from hv-1", { qos: 1 });
    const spoof = await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-2", "as hv-2", { qos: 1 }).then(() => "acked", (e: Error) => e.message);
    assert.match(spoof, /Not authorized/i, "the CN is the identity the ACL applies to");
    assert.equal((await fence(hv, nve, "nvo3/v1/nve/nve-a/req/hv-1")).map((g) => g.payload), ["from hv-1"]);
    assert.ok(await connectClient(`mqtts://127.0.0.1:${tlsPort}`, { ca, protocolVersion: 5 }).then(() => false, () => true), "TLS without a client certificate is refused");
    assert.ok(await connectClient(`mqtt://127.0.0.1:${plainPort}`, { username: "nve-a", password: "nope", protocolVersion: 5 }).then(() => false, () => true), "a wrong password is refused");
  });
});

test("mosquitto-conf --unix-socket: a Unix socket listener for local clients (mqtt+unix://), passwords and the ACL as on loopback", async () => {
  assert.not.ok(mosquittoConfFile().includes("listener 0 "), "not in the default file: the socket's directory is the service manager's");
  await withConfMosquitto("nvl-mosquitto-unix-", async (dir, clean, start) => {
    const sock = join(dir, "nvedge.sock");
    const file = mosquittoConfFile({ unixSocket: sock });
    assert.ok(file.includes(`listener 0 ${sock}\nmax_connections 4096\nuse_username_as_clientid true\n`), file);
    assert.throws(() => mosquittoConfFile({ unixSocket: "relative.sock" }), /absolute path/);
    assert.throws(() => mosquittoConfFile({ unixSocket: `/${"x".repeat(110)}` }), /107 bytes/);
    execFileSync("mosquitto_passwd", ["-c", "-b", join(dir, "passwd"), "nve-a", "pw-nve-a"]);
    execFileSync("mosquitto_passwd", ["-b", join(dir, "passwd"), "hv-1", "pw-hv-1"]);
    writeFileSync(join(dir, "acl"), mosquittoAclFile({ nves: ["nve-a"], hypervisors: { "nve-a": ["hv-1"] }, imas: ["ima"], operators: [] }));
    // the generated file with the TLS listener and persistence taken out (as the shipped-file test does), its paths in the temp dir
    const plainPort = await freePort();
    await start(file.replaceAll("/etc/mosquitto/nvedge/", `${dir}/`).replace("persistence true\n", "persistence false\n").replace("persistence_location /var/lib/mosquitto/\n", "")
      .replace(/listener 8883\n(?:[^\n]+\n)*?tls_version tlsv1\.2\n/, "").replace("listener 1883 127.0.0.1\n", `listener ${plainPort} 127.0.0.1\n`), [plainPort]);
    const url = `mqtt+unix://${sock}`;
    const nve = clean.add(await connectClient(url, { username: "nve-a", password: "pw-nve-a" }));
    const hv = clean.add(await connectClient(url, { username: "hv-1", password: "pw-hv-1", protocolVersion: 5 }));
    assert.equal(await subscribe(nve, ["nvo3/v1/nve/nve-a/#"]), [1]);
    await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-1", "over the socket", { qos: 1 });
    const spoof = await hv.publishAsync("nvo3/v1/nve/nve-a/req/hv-2", "as hv-2", { qos: 1 }).then(() => "acked", (e: Error) => e.message);
    assert.equal((await fence(hv, nve, "nvo3/v1/nve/nve-a/req/hv-1")).map((g) => g.payload), ["over the socket"]);
    assert.match(spoof, /Not authorized/i, "the ACL applies on the socket");
    assert.ok(await connectClient(url, { username: "nve-a", password: "nope" }).then(() => false, () => true), "a wrong password is refused");
  });
});

test.run();
