// The NVE's own MQTT client (host/protocol/mqtt-lean.ts, issue 15) against a
// scripted broker on loopback (mqtt-packet on the broker's side): frames cut
// anywhere by the reads, a QoS 1 publish unacknowledged at a dropped
// connection sent again with DUP and the same id after the reconnect, the
// subscriptions made again, a refused CONNACK failing start, a broker not up
// yet waited for, a malformed frame dropping the connection, keepalive. The
// whole protocol against aedes and Mosquitto (3.1.1 and 5) is the control
// suite's (test/control.test.ts) and the broker restart test's.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { connect, createServer, type Server, type Socket } from "node:net";
import { spawn } from "node:child_process";
import * as mqttPacket from "mqtt-packet";
import type { Packet } from "mqtt-packet";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LeanMqttClient, connectLeanWhenReachable, encodePublish4, unixSocketPath } from "../host/protocol/mqtt-lean.js";
import { brokerUrlError } from "../host/domain/broker-url.js";
import { retryableConnectError } from "../host/protocol/mqtt.js";
import { freePort, until } from "./support/control-harness.js";
import { createServer as createTlsServer } from "node:tls";
import { makePki } from "./support/pki.js";

/** One broker-side connection: the packets it got, and a way to answer. */
interface Conn { sock: Socket; got: Packet[]; send(p: Packet | Buffer): void }

/**
 * A scripted broker: accepts connections, parses what clients send, and
 * answers CONNACK (with `connack` as return code), SUBACK (granted as asked)
 * and PINGRESP unless told otherwise; PUBLISHes are acknowledged when `ack`.
 */
async function broker(o: { port?: number; connack?: number; ack?: boolean; pingresp?: boolean; pv?: 4 | 5; unixPath?: string; tls?: { cert: Buffer; key: Buffer } } = {}) {
  const conns: Conn[] = [];
  const pv = o.pv ?? 4;
  const accept = (sock: Socket) => {
    const parser = mqttPacket.parser({ protocolVersion: pv });
    const c: Conn = {
      sock, got: [],
      send: (p) => { if (!sock.destroyed) sock.write(Buffer.isBuffer(p) ? p : mqttPacket.generate(p, { protocolVersion: pv })); },
    };
    conns.push(c);
    parser.on("packet", (p: Packet) => {
      c.got.push(p);
      if (p.cmd === "connect") c.send({ cmd: "connack", sessionPresent: false, ...(pv === 5 ? { reasonCode: o.connack ?? 0 } : { returnCode: o.connack ?? 0 }) });
      if (p.cmd === "subscribe") c.send({ cmd: "suback", messageId: p.messageId!, granted: p.subscriptions.map((s) => s.qos) });
      if (p.cmd === "publish" && p.qos === 1 && o.ack !== false) c.send({ cmd: "puback", messageId: p.messageId! });
      if (p.cmd === "pingreq" && o.pingresp !== false) c.send({ cmd: "pingresp" });
    });
    sock.on("data", (d) => parser.parse(d));
    sock.on("error", () => {});
  };
  const srv: Server = o.tls ? createTlsServer(o.tls, accept) : createServer(accept);
  const port = o.unixPath === undefined ? o.port ?? await freePort() : 0;
  await new Promise<void>((r) => (o.unixPath !== undefined ? srv.listen(o.unixPath, r) : srv.listen(port, "127.0.0.1", r)));
  return {
    url: o.unixPath !== undefined ? `mqtt+unix://${o.unixPath.split("/").map(encodeURIComponent).join("/")}` : `${o.tls ? "mqtts" : "mqtt"}://127.0.0.1:${port}`, conns, opts: o,
    last: () => conns[conns.length - 1],
    close: () => new Promise<void>((r) => { for (const c of conns) c.sock.destroy(); srv.close(() => r()); }),
  };
}

const opts = (extra: object = {}) => ({ clientId: "nve-t", protocolVersion: 4 as const, clean: true, reconnectPeriod: 50, connectTimeout: 2000, keepalive: 30, ...extra });
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

const s = suite("the NVE's MQTT client (mqtt-lean)");

s("messages whose frames are cut anywhere by the reads arrive whole, in order, each acknowledged", async () => {
  const b = await broker();
  const c = await connectLeanWhenReachable(b.url, () => {}, opts());
  try {
    const got: { topic: string; payload: string; retain: boolean }[] = [];
    c.on("message", (topic: string, payload: Buffer, p: { retain: boolean }) => got.push({ topic, payload: payload.toString(), retain: p.retain }));
    const granted = await c.subscribeAsync(["nvo3/v1/nve/n/req/+"], { qos: 1 });
    assert.equal(granted, [{ topic: "nvo3/v1/nve/n/req/+", qos: 1 }]);
    const big = "x".repeat(200_000); // a remaining length of 3 bytes
    const frames = [
      encodePublish4("nvo3/v1/nve/n/req/hv-1", Buffer.from('{"id":"a"}'), 1, false, 7),
      encodePublish4("nvo3/v1/nve/n/req/hv-2", Buffer.from(big), 1, false, 8),
      encodePublish4("nvo3/v1/nve/n/status/hv-é", Buffer.from("s"), 0, true, 0),
      encodePublish4("nvo3/v1/nve/n/req/hv-3", Buffer.from('{"id":"b"}'), 1, false, 9),
    ];
    const all = Buffer.concat(frames);
    // pieces of 1, 2, 3 ... bytes for the first 100 bytes (inside the fixed headers and lengths), then large ones; each its own write, a turn apart
    let o = 0;
    for (let k = 1; o < all.length; k++) {
      const n = o < 100 ? k % 4 + 1 : 65_536;
      b.last().send(all.subarray(o, o + n));
      o += n;
      await tick(o < 100 ? 2 : 0);
    }
    await until(() => got.length === 4, 5000, "the four messages");
    assert.equal(got.map((g) => g.topic), ["nvo3/v1/nve/n/req/hv-1", "nvo3/v1/nve/n/req/hv-2", "nvo3/v1/nve/n/status/hv-é", "nvo3/v1/nve/n/req/hv-3"]);
    assert.is(got[0].payload, '{"id":"a"}');
    assert.is(got[1].payload, big);
    assert.is(got[2].retain, true);
    assert.is(got[3].payload, '{"id":"b"}');
    await until(() => b.last().got.filter((p) => p.cmd === "puback").length === 3, 5000, "three PUBACKs");
    assert.equal(b.last().got.filter((p) => p.cmd === "puback").map((p) => p.messageId), [7, 8, 9]);
  } finally {
    await c.endAsync(true);
    await b.close();
  }
});

for (const via of ["tcp", "unix", "tls"] as const) {
  s(`the reused read buffer (${via}): several frames in one read, a frame split across reads with others behind it, and payloads kept after the handler stay intact`, async () => {
    const dir = via !== "tcp" ? mkdtempSync(join(tmpdir(), "nvl-lean-read-")) : undefined;
    const pki = via === "tls" ? makePki(join(dir!, "pki"), ["nve-t"]) : undefined;
    const b = await broker(via === "unix" ? { unixPath: join(dir!, "b.sock") } : pki ? { tls: { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) } } : {});
    const c = await connectLeanWhenReachable(b.url, () => {}, opts(pki ? { ca: readFileSync(pki.caFile) } : {}));
    try {
      // the payload Buffers themselves are kept: were they views of the client's read buffer, the reads after them would overwrite them
      const kept: { topic: string; payload: Buffer }[] = [];
      c.on("message", (topic: string, payload: Buffer) => kept.push({ topic, payload }));
      await c.subscribeAsync(["t/#"], { qos: 1 });
      const msg = (k: number) => encodePublish4(`t/${k}`, Buffer.from(`{"k":${k},"fill":"${String.fromCharCode(97 + (k % 26)).repeat(40 + k)}"}`), 1, false, k + 1);
      const expect: string[] = [];
      const frames: Buffer[] = [];
      for (let k = 0; k < 30; k++) {
        frames.push(msg(k));
        expect.push(`{"k":${k},"fill":"${String.fromCharCode(97 + (k % 26)).repeat(40 + k)}"}`);
      }
      // read 1: ten whole frames and the first half of the eleventh; read 2: its rest and nine more whole frames and 3 bytes of the 21st
      const first = Buffer.concat(frames.slice(0, 10));
      const cut = Math.floor(frames[10].length / 2);
      b.last().send(Buffer.concat([first, frames[10].subarray(0, cut)]));
      await until(() => kept.length === 10, 5000, "the first ten messages, from one read");
      await tick(20);
      b.last().send(Buffer.concat([frames[10].subarray(cut), ...frames.slice(11, 20), frames[20].subarray(0, 3)]));
      await until(() => kept.length === 20, 5000, "the next ten");
      await tick(20);
      b.last().send(Buffer.concat([frames[20].subarray(3), ...frames.slice(21)]));
      await until(() => kept.length === 30, 5000, "all thirty");
      // a last read of other bytes over the whole buffer, before the kept payloads are read
      b.last().send(encodePublish4("t/z", Buffer.alloc(3000, 0x7a), 0, false, 0));
      await until(() => kept.length === 31, 5000, "the overwriting message");
      assert.equal(kept.slice(0, 30).map((m) => m.topic), frames.map((_, k) => `t/${k}`));
      assert.equal(kept.slice(0, 30).map((m) => m.payload.toString()), expect);
      await until(() => b.last().got.filter((p) => p.cmd === "puback").length === 30, 5000, "thirty PUBACKs");
      assert.equal(b.last().got.filter((p) => p.cmd === "puback").map((p) => p.messageId), frames.map((_, k) => k + 1));
    } finally {
      await c.endAsync(true);
      await b.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });
}

s("MQTT 5 (mqtt-packet's path): a payload and correlation data kept after the handler stay intact after later reads", async () => {
  const b = await broker({ pv: 5 });
  const c = await connectLeanWhenReachable(b.url, () => {}, opts({ protocolVersion: 5 }));
  try {
    const kept: { payload: Buffer; corr: Buffer | undefined }[] = [];
    c.on("message", (_t: string, payload: Buffer, p: { properties?: { correlationData?: Buffer } }) => kept.push({ payload, corr: p.properties?.correlationData }));
    await c.subscribeAsync(["t/#"], { qos: 1 });
    const pub = (k: number) => mqttPacket.generate({ cmd: "publish", topic: `t/${k}`, payload: Buffer.from(`payload-${k}`), qos: 1, messageId: k + 1, retain: false, dup: false,
      properties: { correlationData: Buffer.from(`corr-${k}`) } }, { protocolVersion: 5 });
    b.last().send(Buffer.concat([pub(0), pub(1), pub(2)]));
    await until(() => kept.length === 3, 5000, "three messages from one read");
    b.last().send(mqttPacket.generate({ cmd: "publish", topic: "t/z", payload: Buffer.alloc(2000, 0x7a), qos: 0, retain: false, dup: false }, { protocolVersion: 5 }));
    await until(() => kept.length === 4, 5000, "the overwriting message");
    assert.equal(kept.slice(0, 3).map((m) => [m.payload.toString(), m.corr?.toString()]), [["payload-0", "corr-0"], ["payload-1", "corr-1"], ["payload-2", "corr-2"]]);
  } finally {
    await c.endAsync(true);
    await b.close();
  }
});

s("a publish unacknowledged when the connection drops is sent again with DUP and its id; subscriptions are made again", async () => {
  const b = await broker({ ack: false });
  const c = await connectLeanWhenReachable(b.url, () => {}, opts());
  const events: string[] = [];
  c.on("offline", () => events.push("offline"));
  c.on("connect", () => events.push("connect"));
  c.on("error", () => {});
  try {
    await c.subscribeAsync(["a/+", "b/#"], { qos: 1 });
    let acked = 0;
    let err: Error | undefined;
    c.publish("nvo3/v1/hv/hv-1/rsp", Buffer.from('{"id":"r1","ok":true}'), { qos: 1 }, (e) => { acked++; err = e; });
    await until(() => b.last().got.some((p) => p.cmd === "publish"), 5000, "the first send");
    const first = b.last().got.find((p) => p.cmd === "publish") as Packet & { messageId: number; dup: boolean };
    assert.is(first.dup, false);
    b.opts.ack = true;
    b.last().sock.destroy(); // the broker goes away without acknowledging
    await until(() => b.conns.length === 2 && b.conns[1].got.some((p) => p.cmd === "publish"), 5000, "the reconnect and the second send");
    const again = b.conns[1].got.find((p) => p.cmd === "publish") as Packet & { messageId: number; dup: boolean; payload: Buffer };
    assert.is(again.messageId, first.messageId);
    assert.is(again.dup, true);
    assert.is(again.payload.toString(), '{"id":"r1","ok":true}');
    const sub = b.conns[1].got.find((p) => p.cmd === "subscribe") as Packet & { subscriptions: { topic: string; qos: number }[] };
    assert.equal(sub.subscriptions.map((x) => [x.topic, x.qos]), [["a/+", 1], ["b/#", 1]]);
    await until(() => acked === 1, 5000, "the publish's callback");
    assert.is(err, undefined);
    assert.equal(events, ["offline", "connect"]);
    assert.ok(c.connected);
  } finally {
    await c.endAsync(true);
    await b.close();
  }
});

s("publishes made while offline wait for the connection; an unsubscribed filter is not made again", async () => {
  const b = await broker();
  const c = await connectLeanWhenReachable(b.url, () => {}, opts());
  c.on("error", () => {});
  try {
    await c.subscribeAsync(["a/+", "b/#"], { qos: 1 });
    c.unsubscribe("b/#");
    await until(() => b.last().got.some((p) => p.cmd === "unsubscribe"), 5000, "the UNSUBSCRIBE");
    b.last().sock.destroy();
    await until(() => !c.connected, 5000, "the client to see the drop");
    const sent = c.publishAsync("x/y", "while offline", { qos: 1 });
    await sent;
    const conn = b.conns[1];
    const p = conn.got.find((x) => x.cmd === "publish") as Packet & { dup: boolean; payload: Buffer };
    assert.is(p.payload.toString(), "while offline");
    assert.is(p.dup, false, "never sent before: no DUP");
    const sub = conn.got.find((x) => x.cmd === "subscribe") as Packet & { subscriptions: { topic: string }[] };
    assert.equal(sub.subscriptions.map((x) => x.topic), ["a/+"]);
    assert.ok(conn.got.findIndex((x) => x.cmd === "subscribe") < conn.got.findIndex((x) => x.cmd === "publish"), "subscriptions first");
  } finally {
    await c.endAsync(true);
    await b.close();
  }
});

s("a refused CONNACK fails start with the broker's reason; a broker not up yet is waited for", async () => {
  const refused = await broker({ connack: 5 });
  try {
    const e = await connectLeanWhenReachable(refused.url, () => {}, opts()).then(() => undefined, (x: Error & { code?: number }) => x);
    assert.ok(e, "start fails");
    assert.is(e!.message, "Connection refused: Not authorized");
    assert.is(e!.code, 5);
  } finally {
    await refused.close();
  }
  const port = await freePort();
  const logs: string[] = [];
  const starting = connectLeanWhenReachable(`mqtt://127.0.0.1:${port}`, (l) => logs.push(l), opts());
  let b: Awaited<ReturnType<typeof broker>> | undefined;
  try {
    await until(() => logs.some((l) => /ECONNREFUSED.*retrying/.test(l)), 5000, "a logged retry");
    b = await broker({ port });
    const c = await starting;
    assert.ok(c.connected);
    assert.is((b.last().got[0] as Packet & { clientId: string }).clientId, "nve-t");
    await c.endAsync();
    assert.is(b.last().got.at(-1)!.cmd, "disconnect", "a clean stop says DISCONNECT (no will)");
  } finally {
    await b?.close();
  }
});

s("a malformed frame from the broker drops the connection, reported, and the client connects again", async () => {
  const b = await broker();
  const c = await connectLeanWhenReachable(b.url, () => {}, opts());
  const errors: string[] = [];
  c.on("error", (e: Error) => errors.push(e.message));
  try {
    b.last().send(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])); // a remaining length of five bytes (3.1.1 §2.2.3 allows four)
    await until(() => b.conns.length === 2 && c.connected, 5000, "the reconnect");
    assert.ok(errors.some((m) => /malformed remaining length/.test(m)), errors.join("; "));
  } finally {
    await c.endAsync(true);
    await b.close();
  }
});

s("keepalive: PINGREQ when idle; no PINGRESP drops the connection", async () => {
  const b = await broker({ pingresp: false });
  const c = await connectLeanWhenReachable(b.url, () => {}, opts({ keepalive: 1 }));
  const errors: string[] = [];
  c.on("error", (e: Error) => errors.push(e.message));
  try {
    await until(() => b.conns[0].got.some((p) => p.cmd === "pingreq"), 5000, "a PINGREQ");
    await until(() => b.conns.length >= 2, 5000, "the connection dropped and made again");
    assert.ok(errors.includes("Keepalive timeout"), errors.join("; "));
  } finally {
    await c.endAsync(true);
    await b.close();
  }
});

s("MQTT 5: a PUBACK with an error reason fails the publish; a refused subscription is reported as such", async () => {
  const b = await broker({ pv: 5, ack: false });
  const c = new LeanMqttClient(b.url, opts({ protocolVersion: 5 }));
  c.on("error", () => {});
  try {
    await until(() => c.connected, 5000, "connected");
    const p = c.publishAsync("t/x", "x", { qos: 1, properties: { contentType: "application/json" } });
    await until(() => b.last().got.some((x) => x.cmd === "publish"), 5000, "the publish");
    const pub = b.last().got.find((x) => x.cmd === "publish") as Packet & { messageId: number; properties?: { contentType?: string } };
    assert.is(pub.properties?.contentType, "application/json");
    b.last().send({ cmd: "puback", messageId: pub.messageId, reasonCode: 0x87 });
    const e = await p.then(() => undefined, (x: Error) => x);
    assert.is(e?.message, "Publish error: Not authorized");
  } finally {
    await c.endAsync(true);
    await b.close();
  }
});

s("over a Unix socket (mqtt+unix:///PATH): messages both ways, and an unacknowledged publish sent again with DUP after a drop", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-lean-unix "));
  const b = await broker({ unixPath: join(dir, "b.sock"), ack: false });
  try {
    assert.match(b.url, /^mqtt\+unix:\/\/\/.*%20/); // the space in the directory's name, percent-encoded in the URL
    const c = await connectLeanWhenReachable(b.url, () => {}, opts());
    c.on("error", () => {});
    try {
      assert.is(c.stream!.remoteAddress, undefined, "not a TCP socket");
      const got: string[] = [];
      c.on("message", (_t: string, payload: Buffer) => got.push(payload.toString()));
      await c.subscribeAsync(["nvo3/v1/hv/hv-1/rsp"], { qos: 1 });
      b.last().send(encodePublish4("nvo3/v1/hv/hv-1/rsp", Buffer.from('{"id":"a"}'), 1, false, 3));
      await until(() => got.length === 1 && b.last().got.some((p) => p.cmd === "puback"), 5000, "the message and its PUBACK");
      assert.is(got[0], '{"id":"a"}');
      let acked = 0;
      c.publish("nvo3/v1/nve/n/req/hv-1", Buffer.from('{"id":"r1"}'), { qos: 1 }, () => acked++);
      await until(() => b.last().got.some((p) => p.cmd === "publish"), 5000, "the first send");
      b.opts.ack = true;
      b.last().sock.destroy();
      await until(() => b.conns.length === 2 && acked === 1, 5000, "the reconnect, the second send and its PUBACK");
      const again = b.conns[1].got.find((p) => p.cmd === "publish") as Packet & { dup: boolean; payload: Buffer };
      assert.is(again.dup, true);
      assert.is(again.payload.toString(), '{"id":"r1"}');
    } finally {
      await c.endAsync(true);
    }
  } finally {
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

s("over a Unix socket: a broker not up yet (no socket file) and a full listen backlog (EAGAIN) are waited for, not a failed start", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-lean-unix-"));
  const path = join(dir, "b.sock");
  const logs: string[] = [];
  const starting = connectLeanWhenReachable(`mqtt+unix://${path}`, (l) => logs.push(l), opts());
  let b: Awaited<ReturnType<typeof broker>> | undefined;
  // a listener that never accepts, its backlog of 0 taken by one connection: the next connect fails with EAGAIN
  const full = spawn("python3", ["-c", `import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(${JSON.stringify(join(dir, "full.sock"))})\ns.listen(0)\nprint("ready",flush=True)\ntime.sleep(20)`], { stdio: ["ignore", "pipe", "ignore"] });
  try {
    await until(() => logs.some((l) => /ENOENT.*retrying/.test(l)), 5000, "a logged retry while there is no socket");
    b = await broker({ unixPath: path });
    const c = await starting;
    assert.ok(c.connected);
    await c.endAsync();
    await new Promise<void>((r) => full.stdout!.once("data", () => r()));
    const held: Socket[] = [];
    for (let k = 0; k < 4; k++) { const h = connect(join(dir, "full.sock")); h.on("error", () => {}); held.push(h); }
    const codes: unknown[] = [];
    const waiting = new LeanMqttClient(`mqtt+unix://${join(dir, "full.sock")}`, opts());
    waiting.on("error", (e: Error & { code?: unknown }) => codes.push(e.code));
    try {
      await until(() => codes.includes("EAGAIN"), 5000, "EAGAIN");
      assert.ok(retryableConnectError(Object.assign(new Error("x"), { code: "EAGAIN" })), "retried at start (whenConnected)");
      assert.ok(retryableConnectError(Object.assign(new Error("x"), { code: "ENOENT" })));
      assert.ok(!waiting.disconnecting && waiting.reconnecting, "and the client goes on trying");
    } finally {
      for (const h of held) h.destroy();
      await waiting.endAsync(true);
    }
  } finally {
    full.kill("SIGKILL");
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

s("broker URLs: mqtt+unix:// names an absolute path on this host; other schemes are refused with the ones taken", () => {
  assert.is(unixSocketPath("mqtt+unix:///run/mosquitto/nvedge.sock"), "/run/mosquitto/nvedge.sock");
  assert.is(unixSocketPath("mqtts+unix:///tmp/a%20b.sock"), "/tmp/a b.sock");
  assert.is(unixSocketPath("mqtt+unix://localhost/tmp/x.sock"), "/tmp/x.sock");
  assert.is(unixSocketPath("mqtt://127.0.0.1:1883"), undefined);
  assert.throws(() => unixSocketPath("mqtt+unix://broker.example/tmp/x.sock"), /on this host/);
  assert.throws(() => unixSocketPath("mqtt+unix:relative.sock"), /absolute path/);
  assert.throws(() => new LeanMqttClient("mqtt+unix://", opts()), /absolute path/);
  for (const ok of ["mqtt://h:1883", "mqtts://h", "ws://h/mqtt", "wss://h/mqtt", "tcp://h:1", "mqtt+unix:///run/x.sock", "mqtts+unix:///run/x.sock"]) assert.is(brokerUrlError(ok), undefined, ok);
  assert.is(brokerUrlError("http://h:1883"), '--broker "http://h:1883": expected mqtt://, mqtts://, ws://, wss://, tcp:// or mqtt+unix:///PATH');
  assert.ok(brokerUrlError("unix:///run/x.sock"));
});

s("a PUBLISH of a string payload is the PUBLISH of its UTF-8 bytes, byte for byte (the NVE's answers: issue 15)", () => {
  for (const text of ['{"id":"a","ok":true}', '{"id":"é€😀","ok":false}', "", "x".repeat(200_000)])
    for (const [qos, retain, id] of [[1, false, 7], [0, true, 0]] as const)
      assert.ok(encodePublish4("nvo3/v1/hv/hv-é/rsp", text, qos, retain, id).equals(encodePublish4("nvo3/v1/hv/hv-é/rsp", Buffer.from(text), qos, retain, id)), `${text.slice(0, 20)} qos ${qos}`);
});

s.run();
