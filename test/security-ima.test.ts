// Issue 10, items 5, 6 and 9 (and the broker/IMA part of "Unbounded memory"),
// as attacks: each test mounts a real attack through a real broker, asserts
// that it fails, that the state it aimed at is unchanged, and that the victim
// still works. The brokers are the embedded one and Mosquitto started with the
// generated acl_file and the shipped configuration's hardening
// (use_username_as_clientid, queue caps: host/cli/mosquitto-conf.ts).
// Attacks a broker cannot stop on Mosquitto (its acl_file has no payload size
// or retain flag) run on the embedded broker only, and say so.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { imaRequests } from "./support/mqtt-requests.js";
import mqtt, { type MqttClient, type IClientOptions } from "mqtt";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedBroker, type BrokerOptions } from "../host/broker/embedded.js";
import { DEFAULT_BROKER_LIMITS, type BrokerLimits } from "../host/broker/limits.js";
import { ImaService } from "../host/ima/service.js";
import { serveJsonLines } from "../host/ipc/jsonl-socket.js";
import { startMosquitto } from "./support/mosquitto.js";
import { until, mosquittoAvailable, spawnNvedge, freePort } from "./support/control-harness.js";
import { writeFileSync } from "node:fs";

const NVES = [{ id: "nve-a", ip: "192.0.2.1" }, { id: "nve-b", ip: "192.0.2.2" }];
/** The NVEs' ports: hv-1 and hv-2 are nve-a's, hv-3 is nve-b's. */
const HYPERVISORS = { "nve-a": ["hv-1", "hv-2"], "nve-b": ["hv-3"] };
const IDS = ["ima", "alice", "nve-a", "nve-b", "nve-x", "nve-w", "hv-1", "hv-2", "hv-3"];
const PW = Object.fromEntries(IDS.map((id) => [id, `pw-${id}`]));
const M1 = "02:00:5e:00:00:01";
const MAX_SEQ = 4294967295;

interface Broker { name: string; url: string; embedded: boolean; log(): string; close(): Promise<void> }
type Kind = "embedded" | "mosquitto";
const KINDS: Kind[] = mosquittoAvailable() ? ["embedded", "mosquitto"] : ["embedded"];

async function broker(kind: Kind, limits: Partial<BrokerLimits> = {}, extra: Partial<BrokerOptions> = {}): Promise<Broker> {
  // nve-x may talk to the IMA at the broker (it is an NVE there), but the IMA does not list it;
  // nve-w only watches the retained tree (Mosquitto holds one connection per identity)
  const roles = { nves: ["nve-a", "nve-b", "nve-x", "nve-w"], imas: ["ima"], operators: ["alice"], hypervisors: HYPERVISORS };
  if (kind === "embedded") {
    const lines: string[] = [];
    const b = await startEmbeddedBroker({ port: 0, ...roles, limits, log: (l) => lines.push(l), ...extra });
    return { name: kind, url: b.url, embedded: true, log: () => lines.join("\n"), close: () => b.close() };
  }
  const m = await startMosquitto({ users: PW, ...roles, limits, clientIdIsIdentity: true });
  return { name: kind, url: m.url, embedded: false, log: () => m.log(), close: () => m.close() };
}

type Client = MqttClient & { got: { topic: string; payload: string; retain: boolean }[] };

async function client(b: Broker, who: string, o: IClientOptions = {}): Promise<Client> {
  const c = mqtt.connect(b.url, { username: who, password: PW[who], clientId: `${who}-${Math.random().toString(16).slice(2, 10)}`,
    reconnectPeriod: 0, connectTimeout: 4000, ...o }) as Client;
  // listening before the CONNACK: a resumed session's queue follows it at once
  c.got = [];
  c.on("message", (topic, payload, packet) => c.got.push({ topic, payload: payload.toString(), retain: packet.retain }));
  await new Promise<void>((resolve, reject) => {
    c.once("connect", () => resolve());
    c.once("error", (e) => { c.end(true); reject(e); });
    c.once("close", () => reject(new Error("closed before CONNACK")));
  });
  return c;
}

/** A connection attempt's outcome: null when connected (then closed), else the error. */
async function refusal(b: Broker, who: string, o: IClientOptions): Promise<Error | null> {
  return client(b, who, o).then(async (c) => { await c.endAsync(true); return null; }, (e: Error) => e);
}

/** An IMA requester (an NVE or an operator) on its request/response topics (PROTOCOL.md §6). */
async function requester(b: Broker, who: string) {
  return imaRequests(await client(b, who), who, 5000);
}

/** The IMA's retained tree under `filter`, as a fresh reader (nve-w) sees it: topic → payload. */
async function tree(b: Broker, filter = "nvo3/v1/ima/#"): Promise<Record<string, string>> {
  const c = await client(b, "nve-w");
  try {
    const subs = ["nvo3/v1/ima/vn/#", "nvo3/v1/ima/vtep/#", "nvo3/v1/ima/bind/#"];
    await c.subscribeAsync(filter === "nvo3/v1/ima/#" ? subs : [filter], { qos: 1 });
    await new Promise((r) => setTimeout(r, 100)); // retained messages follow the SUBACK at once
    return Object.fromEntries(c.got.filter((g) => g.retain).map((g) => [g.topic, g.payload]));
  } finally {
    await c.endAsync(true);
  }
}

async function withIma(kind: Kind, fn: (b: Broker, ima: ImaService) => Promise<void>, o: { dupMoves?: number } = {}): Promise<void> {
  const b = await broker(kind);
  const dir = mkdtempSync(join(tmpdir(), "nvl-secima-"));
  let ima: ImaService | undefined;
  try {
    ima = await ImaService.start({ settings: { operators: ["alice"], nves: NVES, ...(o.dupMoves ? { dupMoves: o.dupMoves } : {}) },
      broker: { url: b.url, password: PW.ima, reconnectPeriodMs: 0 }, store: join(dir, "store"), seed: [{ id: 100, alias: "blue" }] });
    await fn(b, ima);
  } catch (e) {
    console.error(`${kind} log (tail):\n${b.log().slice(-3000)}`);
    throw e;
  } finally {
    await ima?.stop().catch(() => {});
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- IMA poisoning (item 6) --------------------------------------------------

for (const kind of KINDS) {
  test(`IMA poisoning (${kind}): joining with another NVE's IP or 0.0.0.0, leaving with it, an unlisted NVE: not-authorized, nothing changes, the victim still joins`, async () => {
    await withIma(kind, async (b) => {
      const a = await requester(b, "nve-a"), bad = await requester(b, "nve-b"), x = await requester(b, "nve-x");
      assert.ok((await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" })).ok);
      assert.ok((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1"] })).ok);
      const before = await tree(b);
      for (const ip of ["192.0.2.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1", "::", "ff02::1", "192.0.2.99"]) {
        const r = await bad.req("vtep.join", { vn: { id: 100 }, ip });
        assert.is(r.error?.code, "not-authorized", `nve-b joining with ${ip}: ${JSON.stringify(r)}`);
        assert.is(r.error.field, "ip");
      }
      assert.match((await bad.req("vtep.join", { vn: { id: 100 }, ip: "0.0.0.0" })).error.message, /0\.0\.0\.0 is not a unicast address/);
      assert.match((await bad.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" })).error.message, /nve-b may use only its own underlay IP 192\.0\.2\.2/);
      assert.is((await bad.req("vtep.leave", { vn: { id: 100 }, ip: "192.0.2.1" })).error.code, "not-authorized", "leaving in another's name");
      // an NVE the IMA does not list: every request refused, the catalog included
      for (const [op, body] of [["vtep.join", { vn: { id: 100 }, ip: "192.0.2.77" }], ["bind.announce", { vn: { id: 100 }, mac: M1 }],
        ["bind.withdraw", { vn: { id: 100 }, mac: M1 }], ["vn.resolve", { vn: { id: 100 } }]] as const) {
        const r = await x.req(op, body);
        assert.is(r.error?.code, "not-authorized", `nve-x ${op}`);
        assert.match(r.error.message, /nve-x is not an NVE of IMA ima/);
      }
      // an announcement without a join (nve-b never joined)
      assert.is((await bad.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5e:00:00:09" })).error.code, "not-connected");
      // a withdraw of nve-a's MAC by nve-b: ok (idempotent) but nothing changes
      assert.ok((await bad.req("bind.withdraw", { vn: { id: 100 }, mac: M1 })).ok);
      assert.equal(await tree(b), before, "the flood list and bindings are unchanged");
      // the victim still works, and nve-b with its own IP too
      assert.ok((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1", "10.0.0.2"] })).ok);
      assert.ok((await bad.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" })).ok);
      const after = await tree(b);
      assert.equal(JSON.parse(after[`nvo3/v1/ima/bind/100/${M1}`]), { nve: "nve-a", ip: "192.0.2.1", ips: ["10.0.0.1", "10.0.0.2"], seq: 0 });
      assert.equal(JSON.parse(after["nvo3/v1/ima/vtep/100/nve-b"]), { ip: "192.0.2.2" });
      for (const c of [a, bad, x]) await c.c.endAsync(true);
    });
  });

  test(`IMA poisoning (${kind}): announcing another NVE's MAC with seq 4294967295 cannot pin it; the rightful NVE wins it back`, async () => {
    await withIma(kind, async (b) => {
      const a = await requester(b, "nve-a"), bad = await requester(b, "nve-b");
      assert.ok((await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" })).ok);
      assert.ok((await bad.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" })).ok);
      assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 0 })).seq, 0);
      // the attack: a "move" with the highest sequence number there is
      const r = await bad.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: MAX_SEQ });
      assert.is(r.seq, 1, "the IMA assigns holder's seq + 1; the sender's seq is ignored");
      assert.equal(JSON.parse((await tree(b))[`nvo3/v1/ima/bind/100/${M1}`]).seq, 1, "no 4294967295 anywhere");
      // the rightful NVE (its VM is really there) announces again and wins it back
      const back = await a.req("bind.announce", { vn: { id: 100 }, mac: M1 });
      assert.ok(back.ok, JSON.stringify(back));
      assert.is(back.seq, 2);
      assert.equal(JSON.parse((await tree(b))[`nvo3/v1/ima/bind/100/${M1}`]), { nve: "nve-a", ip: "192.0.2.1", ips: [], seq: 2 });
      for (const c of [a, bad]) await c.c.endAsync(true);
    });
  });

  test(`duplicate freeze (${kind}): an NVE cannot unfreeze or list; the operator lists and unfreezes, and the MAC moves again`, async () => {
    await withIma(kind, async (b) => {
      const a = await requester(b, "nve-a"), nb = await requester(b, "nve-b"), alice = await requester(b, "alice");
      await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
      await nb.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
      await a.req("bind.announce", { vn: { id: 100 }, mac: M1 });
      assert.ok((await nb.req("bind.announce", { vn: { id: 100 }, mac: M1 })).ok);
      assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).error.field, "mac", "frozen at nve-b");
      const before = await tree(b);
      for (const [op, body] of [["mac.unfreeze", { vn: { id: 100 }, mac: M1 }], ["mac.frozen", {}]] as const) {
        const r = await a.req(op, body);
        assert.is(r.error?.code, "not-authorized", `nve-a ${op}`);
      }
      assert.equal(await tree(b), before, "still frozen");
      assert.equal((await alice.req("mac.frozen", { vn: { alias: "blue" } })).macs.map((m: any) => [m.mac, m.nve]), [[M1, "nve-b"]]);
      const un = await alice.req("mac.unfreeze", { vn: { id: 100 }, mac: M1 });
      assert.equal([un.ok, un.nve, un.seq], [true, "nve-b", 1]);
      assert.equal(JSON.parse((await tree(b))[`nvo3/v1/ima/bind/100/${M1}`]), { nve: "nve-b", ip: "192.0.2.2", ips: [], seq: 1 }, "no longer marked duplicate");
      assert.equal((await alice.req("mac.frozen")).macs, []);
      assert.equal(await alice.req("mac.unfreeze", { vn: { id: 100 }, mac: M1 }).then((r) => [r.ok, r.seq]), [true, 1], "idempotent");
      assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 2, "the MAC moves again");
      for (const c of [a, nb, alice]) await c.c.endAsync(true);
    }, { dupMoves: 1 });
  });

  // ---- the broker (item 5) -----------------------------------------------------

  test(`client-id squatting (${kind}): hv-2 with a persistent session on the IMA's client id cannot keep the IMA out`, async () => {
    const b = await broker(kind);
    const dir = mkdtempSync(join(tmpdir(), "nvl-secima-"));
    let ima: ImaService | undefined;
    const open: MqttClient[] = [];
    try {
      for (const id of ["ima", "nvedge-ima-ima", "ima-squat"]) {
        const o = { clientId: id, clean: false };
        if (kind === "embedded") {
          const e = await refusal(b, "hv-2", o);
          assert.match(String(e?.message), /Identifier rejected/i, `hv-2 as ${id}`);
          assert.match(b.log(), new RegExp(`identity=hv-2 client=${JSON.stringify(JSON.stringify(id)).slice(1, -1)} .*does not start with "hv-2-"`));
        } else {
          // Mosquitto (use_username_as_clientid): the client id becomes "hv-2", whatever hv-2 sends
          open.push(await client(b, "hv-2", o));
        }
      }
      // the victim logs in, with its persistent session, and serves
      ima = await ImaService.start({ settings: { operators: ["alice"], nves: NVES }, broker: { url: b.url, password: PW.ima, reconnectPeriodMs: 0 },
        store: join(dir, "store"), seed: [{ id: 100, alias: "blue" }] });
      const a = await requester(b, "nve-a");
      assert.is((await a.req("vn.resolve", { vn: { id: 100 } })).vn.alias, "blue");
      await a.c.endAsync(true);
      if (kind === "mosquitto") {
        // hv-2 holds one session, its own: the last of its connections; the IMA's was never touched
        assert.ok(open.at(-1)!.connected, "hv-2's own session");
        assert.match(b.log(), /as hv-2 \(/, "Mosquitto logs hv-2's client id as hv-2");
        assert.not.match(b.log(), /as ima \([^)]*u'hv-2'/, "no session ima for hv-2");
      }
    } finally {
      for (const c of open) await c.endAsync(true).catch(() => {});
      await ima?.stop().catch(() => {});
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`an NVE answers only its own hypervisors (${kind}): nve-b cannot write hv-1's rsp/evt; nve-a still can`, async () => {
    const b = await broker(kind);
    try {
      const hv1 = await client(b, "hv-1");
      await hv1.subscribeAsync("nvo3/v1/hv/hv-1/#", { qos: 1 });
      const nb = await client(b, "nve-b"), na = await client(b, "nve-a");
      for (const t of ["nvo3/v1/hv/hv-1/rsp", "nvo3/v1/hv/hv-1/evt"]) {
        // MQTT 3.1.1: acknowledged and dropped ([MQTT-3.3.5-2]), as both brokers do
        await nb.publishAsync(t, JSON.stringify({ id: "x", ok: false, error: { code: "not-authorized", message: "forged by nve-b" } }), { qos: 1 });
      }
      await na.publishAsync("nvo3/v1/hv/hv-1/rsp", JSON.stringify({ id: "real", ok: true }), { qos: 1 });
      await until(() => hv1.got.length >= 1, 3000, "nve-a's answer");
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(hv1.got.map((g) => JSON.parse(g.payload).id), ["real"], "only nve-a's answer reached hv-1");
      // nve-b still answers its own hypervisor
      const hv3 = await client(b, "hv-3");
      await hv3.subscribeAsync("nvo3/v1/hv/hv-3/rsp", { qos: 1 });
      await nb.publishAsync("nvo3/v1/hv/hv-3/rsp", JSON.stringify({ id: "b", ok: true }), { qos: 1 });
      await until(() => hv3.got.length === 1, 3000, "nve-b's answer to hv-3");
      for (const c of [hv1, hv3, na, nb]) await c.endAsync(true);
    } finally {
      await b.close();
    }
  });
}

test("retained status (embedded): an agent cannot park a large status, a retained request or a status under an unknown NVE; its small status still works", async () => {
  const b = await broker("embedded");
  try {
    const hv1 = await client(b, "hv-1");
    await hv1.publishAsync("nvo3/v1/nve/nve-a/status/hv-1", JSON.stringify({ state: "online" }), { qos: 1, retain: true });
    // the attacks: 100 KB of retained status, a retained request, a status under an NVE nobody configured
    await hv1.publishAsync("nvo3/v1/nve/nve-a/status/hv-1", JSON.stringify({ state: "online", pad: "x".repeat(100_000) }), { qos: 1, retain: true });
    await hv1.publishAsync("nvo3/v1/nve/nve-a/req/hv-1", JSON.stringify({ id: "r", op: "hello" }), { qos: 1, retain: true });
    await hv1.publishAsync("nvo3/v1/nve/ghost-1/status/hv-1", JSON.stringify({ state: "online" }), { qos: 1, retain: true });
    // the NVE comes (back) and reads what is retained for it
    const nve = await client(b, "nve-a");
    await nve.subscribeAsync("nvo3/v1/nve/nve-a/#", { qos: 1 });
    await until(() => nve.got.length >= 1, 3000, "the retained status");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(nve.got.map((g) => [g.topic, g.payload, g.retain]), [["nvo3/v1/nve/nve-a/status/hv-1", '{"state":"online"}', true]], "only the small status is kept");
    assert.match(b.log(), /acl: hv-1 may not publish retained to "nvo3\/v1\/nve\/nve-a\/status\/hv-1" \(payload of \d+ bytes exceeds the 1024 allowed on this topic\)/);
    assert.match(b.log(), /retained messages are not accepted on this topic/);
    assert.match(b.log(), /"nvo3\/v1\/nve\/ghost-1\/status\/hv-1" \(no write grant\)/);
    // the agent still works: a live request and a status change reach the NVE
    await hv1.publishAsync("nvo3/v1/nve/nve-a/req/hv-1", JSON.stringify({ id: "live", op: "hello" }), { qos: 1 });
    await hv1.publishAsync("nvo3/v1/nve/nve-a/status/hv-1", JSON.stringify({ state: "offline" }), { qos: 1, retain: true });
    await until(() => nve.got.length === 3, 3000, "the live request and the new status");
    assert.equal(nve.got.slice(1).map((g) => g.payload), ['{"id":"live","op":"hello"}', '{"state":"offline"}']);
    await hv1.endAsync(true);
    await nve.endAsync(true);
  } finally {
    await b.close();
  }
});

test("sessions per identity (embedded): hv-2's fifth persistent session is refused; its own four stay and hv-1 still logs in", async () => {
  const b = await broker("embedded");
  const open: MqttClient[] = [];
  try {
    assert.is(DEFAULT_BROKER_LIMITS.maxSessionsPerIdentity, 4);
    for (let i = 0; i < 4; i++) {
      const c = await client(b, "hv-2", { clientId: `hv-2-s${i}`, clean: false });
      await c.subscribeAsync("nvo3/v1/hv/hv-2/#", { qos: 1 });
      await c.endAsync(); // offline: the session stays
    }
    const fifth = await refusal(b, "hv-2", { clientId: "hv-2-s4", clean: false });
    assert.match(String(fifth?.message), /Server unavailable/i);
    assert.match(b.log(), /identity hv-2 already holds 4 sessions \(limit 4\)/);
    // hv-2 may still resume one of its own sessions, and hv-1 is not affected
    const again = await client(b, "hv-2", { clientId: "hv-2-s0", clean: false });
    assert.ok(again.connected);
    open.push(again, await client(b, "hv-1"));
    // a clean session ends one of them: the share is free again
    await (await client(b, "hv-2", { clientId: "hv-2-s1", clean: true })).endAsync();
    await until(async () => (await refusal(b, "hv-2", { clientId: "hv-2-s5", clean: false })) === null, 3000, "a freed session slot");
  } finally {
    for (const c of open) await c.endAsync(true).catch(() => {});
    await b.close();
  }
});

for (const kind of KINDS) {
  test(`offline queue (${kind}): responses flooded at an absent persistent session stop at the cap; the session and others still work`, async () => {
    const b = await broker(kind, { maxQueuedMessages: 5 });
    try {
      const away = await client(b, "hv-1", { clientId: kind === "embedded" ? "hv-1-p" : "hv-1", clean: false });
      await away.subscribeAsync("nvo3/v1/hv/hv-1/rsp", { qos: 1 });
      await away.endAsync();
      const na = await client(b, "nve-a");
      for (let i = 0; i < 60; i++) await na.publishAsync("nvo3/v1/hv/hv-1/rsp", JSON.stringify({ id: `q${i}` }), { qos: 1 });
      const hv2 = await client(b, "hv-2");
      await hv2.subscribeAsync("nvo3/v1/hv/hv-2/rsp", { qos: 1 });
      await na.publishAsync("nvo3/v1/hv/hv-2/rsp", JSON.stringify({ id: "other" }), { qos: 1 });
      await until(() => hv2.got.length === 1, 3000, "hv-2 unaffected");
      const back = await client(b, "hv-1", { clientId: kind === "embedded" ? "hv-1-p" : "hv-1", clean: false });
      await until(() => back.got.length >= 5, 3000, `the queued responses (got ${JSON.stringify(back.got)})`);
      await new Promise((r) => setTimeout(r, 300));
      const ids = back.got.map((g) => JSON.parse(g.payload).id);
      // embedded: exactly the cap, the first ones; Mosquitto queues max_queued_messages beyond its in-flight window (20)
      if (kind === "embedded") assert.equal(ids, ["q0", "q1", "q2", "q3", "q4"]);
      else assert.ok(ids.length >= 5 && ids.length <= 25, `Mosquitto kept ${ids.length} of 60`);
      // the session works on: a new response arrives
      await na.publishAsync("nvo3/v1/hv/hv-1/rsp", JSON.stringify({ id: "after" }), { qos: 1 });
      await until(() => back.got.some((g) => JSON.parse(g.payload).id === "after"), 3000, "a live response after the queue");
      if (kind === "embedded") assert.match(b.log(), /session "hv-1-p": 5 messages queued \(limit 5\); a QoS 1 message for it is dropped/);
      for (const c of [back, na, hv2]) await c.endAsync(true);
    } finally {
      await b.close();
    }
  });
}

test("connections (embedded): sockets that never CONNECT are closed after connectTimeoutMs (10 s by default); beyond maxConnections a socket is closed at once; clients still log in", async () => {
  assert.is(DEFAULT_BROKER_LIMITS.connectTimeoutMs, 10_000);
  const b = await broker("embedded", { maxConnections: 3, connectTimeoutMs: 300 });
  const socks: Socket[] = [];
  const port = Number(new URL(b.url).port);
  const openSock = () => new Promise<{ s: Socket; closed: Promise<void> }>((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => resolve({ s, closed }));
    const closed = new Promise<void>((r) => s.once("close", () => r()));
    s.on("error", () => {});
    s.once("error", reject);
    socks.push(s);
  });
  try {
    const idle = await Promise.all([openSock(), openSock(), openSock()]);
    const extra = await openSock();
    await Promise.race([extra.closed, new Promise((_, rej) => setTimeout(() => rej(new Error("the 4th socket stayed open")), 3000))]);
    assert.match(b.log(), /connection from 127\.0\.0\.1 closed: 3 open \(limit 3\)/);
    // the silent ones go after the CONNECT timeout (bounded wait)
    await Promise.race([Promise.all(idle.map((x) => x.closed)), new Promise((_, rej) => setTimeout(() => rej(new Error("idle sockets not closed")), 5000))]);
    const c = await client(b, "hv-1");
    assert.ok(c.connected, "a real client logs in once they are gone");
    await c.endAsync(true);
  } finally {
    for (const s of socks) s.destroy();
    await b.close();
  }
});

test("nvedge run's embedded broker: the NVE answers only the hypervisors of its ports; agents write only under its name", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-secrun-"));
  const port = await freePort();
  writeFileSync(join(dir, "nve.json"), JSON.stringify({
    nve: "nve-run", underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
    ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
  }));
  const nve = await spawnNvedge(["run", "--config", join(dir, "nve.json"), "--io", "none", "--memory-store", "--store", join(dir, "st"), "--listen", `127.0.0.1:${port}`]);
  const b: Broker = { name: "nvedge run", url: `mqtt://127.0.0.1:${port}`, embedded: true, log: () => nve.err(), close: async () => {} };
  try {
    await until(() => nve.err().includes("running:"), 20_000, `nvedge run (${nve.err()})`);
    const hv1 = await client(b, "hv-1"), hv9 = await client(b, "hv-9");
    await hv1.subscribeAsync("nvo3/v1/hv/hv-1/#", { qos: 1 });
    await hv9.subscribeAsync("nvo3/v1/hv/hv-9/#", { qos: 1 });
    // a second session of the NVE's own identity (the broker allows up to 4): what may it write?
    const as = await client(b, "nve-run");
    await as.publishAsync("nvo3/v1/hv/hv-9/evt", JSON.stringify({ event: "nve.draining" }), { qos: 1 });
    await as.publishAsync("nvo3/v1/hv/hv-1/evt", JSON.stringify({ event: "nve.draining" }), { qos: 1 });
    await until(() => hv1.got.length === 1, 3000, "the event to hv-1");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(hv9.got, [], "hv-9 is on none of nve-run's ports");
    // agents: a request under an NVE name that does not exist is dropped, the real one is answered
    await hv1.publishAsync("nvo3/v1/nve/nve-ghost/req/hv-1", JSON.stringify({ id: "g", op: "hello", agent: "t", capabilities: [] }), { qos: 1 });
    await hv1.publishAsync("nvo3/v1/nve/nve-run/req/hv-1", JSON.stringify({ id: "h", op: "hello", agent: "t", capabilities: [] }), { qos: 1 });
    await until(() => hv1.got.some((g) => g.topic === "nvo3/v1/hv/hv-1/rsp"), 5000, "the hello answer");
    assert.is(JSON.parse(hv1.got.find((g) => g.topic === "nvo3/v1/hv/hv-1/rsp")!.payload).id, "h");
    assert.match(nve.err(), /acl: hv-1 may not publish to "nvo3\/v1\/nve\/nve-ghost\/req\/hv-1" \(no write grant\)/);
    assert.match(nve.err(), /acl: nve-run may not publish to "nvo3\/v1\/hv\/hv-9\/evt"/);
    for (const c of [hv1, hv9, as]) await c.endAsync(true);
  } finally {
    await nve.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("IMA flood (embedded): requests beyond a requester's share of the IMA's queue are answered rate-limited and stored nowhere; another NVE and the flooder itself are served after", async () => {
  const b = await broker("embedded");
  const dir = mkdtempSync(join(tmpdir(), "nvl-secima-"));
  const { openImaDb } = await import("../host/ima/db.js");
  const real = openImaDb(join(dir, "store"));
  // The store's writes can be held, as a slow disk would: the IMA's queue then fills.
  let hold: Promise<void> | undefined, release = () => {}, held = () => {};
  const writing = () => new Promise<void>((r) => { held = r; });
  const db = { ...real, isNew: real.isNew, markSeeded: () => real.markSeeded(), list: real.list.bind(real), close: () => real.close(),
    write: async (ch: Parameters<typeof real.write>[0]) => { if (hold && ch.some((c) => c.c === "binds")) { held(); await hold; } return real.write(ch); } };
  let ima: ImaService | undefined;
  try {
    ima = await ImaService.start({ settings: { nves: NVES }, broker: { url: b.url, reconnectPeriodMs: 0 }, store: db, seed: [{ id: 100, alias: "blue" }], maxPendingPerRequester: 5 });
    const a = await requester(b, "nve-a"), nb = await requester(b, "nve-b");
    assert.ok((await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" })).ok);
    assert.ok((await nb.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" })).ok);
    hold = new Promise<void>((r) => { release = r; });
    const inWrite = writing();
    const first = a.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5e:00:01:00" });
    await inWrite; // the IMA is stuck storing nve-a's first request
    const mac = (i: number) => `02:00:5e:00:01:${String(i).padStart(2, "0")}`;
    const flood = Array.from({ length: 10 }, (_, i) => a.req("bind.announce", { vn: { id: 100 }, mac: mac(i + 1) }));
    const other = nb.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5e:00:02:01" });
    // 1 in the store + 4 waiting = nve-a's 5; the other 6 are answered at once
    const busy = await Promise.all(flood.slice(4));
    assert.equal(busy.map((r) => r.error?.code), Array(6).fill("rate-limited"));
    assert.match(busy[0].error.message, /5 requests of nve-a are already waiting at the IMA/);
    release();
    hold = undefined;
    const served = await Promise.all([first, ...flood.slice(0, 4), other]);
    assert.ok(served.every((r) => r.ok), JSON.stringify(served));
    const t = await tree(b, "nvo3/v1/ima/bind/#");
    assert.equal(Object.keys(t).sort(), ["02:00:5e:00:01:00", mac(1), mac(2), mac(3), mac(4), "02:00:5e:00:02:01"].map((m) => `nvo3/v1/ima/bind/100/${m}`).sort(),
      "the refused announcements are nowhere");
    assert.ok((await a.req("bind.announce", { vn: { id: 100 }, mac: mac(9) })).ok, "the flooder is served again once its queue drained");
    for (const c of [a, nb]) await c.c.endAsync(true);
  } finally {
    release();
    await ima?.stop().catch(() => {});
    await real.close().catch(() => {});
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the admin/control socket is created 0600 under a restrictive umask; the process umask is unchanged", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-secsock-"));
  const old = process.umask(0o022);
  try {
    const path = join(dir, "admin.sock");
    const srv = await serveJsonLines({ path, inUse: "in use", maxBytes: 1024, handle: async () => "pong", toError: () => ({ code: "internal", message: "x" }) });
    assert.is(statSync(path).mode & 0o777, 0o600);
    assert.is(process.umask(0o022), 0o022, "umask restored after listen");
    await srv.close();
  } finally {
    process.umask(old);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
