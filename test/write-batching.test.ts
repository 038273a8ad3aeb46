// Issue 15 (attach throughput): what an MQTT client, or the embedded broker
// to a client, writes in one turn of the event loop leaves in one socket
// write of one buffer (host/protocol/coalesce.ts), in order and whole; and
// the logger's text lines, now built without pino's JSON round trip, read
// exactly as textLine() made them of pino's records.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer, connect, type Socket } from "node:net";
import { coalescePerTurn } from "../host/protocol/coalesce.js";
import { Logger } from "../host/log/logger.js";

/** A connected loopback pair: the server's socket and the client's. */
async function pair(): Promise<{ server: Socket; client: Socket; close(): void }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => srv.once("connection", r));
  const client = connect(port, "127.0.0.1");
  await new Promise<void>((r) => client.once("connect", () => r()));
  const server = await accepted;
  return { server, client, close: () => { client.destroy(); server.destroy(); srv.close(); } };
}

/** Spies on the socket's own write functions: the chunks of each call, as text. */
function spy(server: Socket): string[][] {
  const calls: string[][] = [];
  const s = server as unknown as { _writev(c: { chunk: unknown }[], cb: () => void): void; _write(c: unknown, e: string, cb: () => void): void };
  const writev = s._writev.bind(server), write = s._write.bind(server);
  s._writev = (c, cb) => { calls.push(c.map((x) => String(x.chunk))); writev(c, cb); };
  s._write = (c, e, cb) => { calls.push([String(c)]); write(c, e, cb); };
  return calls;
}

function received(client: Socket): () => string {
  let got = "";
  client.on("data", (d) => (got += d));
  return () => got;
}

async function until(f: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!f() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

test("coalescePerTurn: one turn's writes leave as one buffer in one write, in order, and the next turn's in another", async () => {
  const { server, client, close } = await pair();
  try {
    coalescePerTurn(server);
    coalescePerTurn(server); // twice: a no-op
    const calls = spy(server);
    const got = received(client);
    const done: string[] = [];
    assert.is(server.write("a1;"), true);
    server.write(Buffer.from("a2;"), () => done.push("a2"));
    server.write("a3;", "utf8", () => done.push("a3"));
    assert.equal(calls, [], "nothing written yet");
    assert.equal(done, [], "no callback before the write");
    await new Promise((r) => setImmediate(r));
    assert.equal(calls, [["a1;a2;a3;"]], "the three writes as one buffer, one call");
    server.write("b1;");
    server.write("b2;");
    await new Promise((r) => setImmediate(r));
    assert.equal(calls, [["a1;a2;a3;"], ["b1;b2;"]], "the next turn's writes in a call of their own");
    await until(() => got().length >= 15 && done.length === 2);
    assert.is(got(), "a1;a2;a3;b1;b2;");
    assert.equal(done, ["a2", "a3"], "callbacks once written, in order");
  } finally {
    close();
  }
});

test("coalescePerTurn: what was written in the turn a socket is destroyed still leaves (a refusing CONNACK)", async () => {
  const { server, client, close } = await pair();
  try {
    coalescePerTurn(server);
    let got = "";
    const ended = new Promise<void>((r) => client.on("close", () => r()));
    client.on("data", (d) => (got += d));
    server.cork(); // a writer's own cork level (mqtt-packet's, uncorked next tick)
    server.write("connack-refused;");
    server.destroy();
    await Promise.race([ended, new Promise((r) => setTimeout(r, 5000))]);
    assert.is(got, "connack-refused;");
  } finally {
    close();
  }
});

test("coalescePerTurn: what was written in the turn a socket is ended leaves before the end's own chunk", async () => {
  const { server, client, close } = await pair();
  try {
    coalescePerTurn(server);
    let got = "";
    const ended = new Promise<void>((r) => client.on("end", () => r()));
    client.on("data", (d) => (got += d));
    server.write("disconnect;");
    server.end("bye;");
    await Promise.race([ended, new Promise((r) => setTimeout(r, 5000))]);
    assert.is(got, "disconnect;bye;");
    let err: Error | null | undefined;
    server.on("error", () => {}); // the write-after-end error is also emitted
    server.write("late;", (e) => (err = e));
    await until(() => err !== undefined);
    assert.ok(err, "a write after the end fails as the socket's own");
  } finally {
    close();
  }
});

test("logger: a text line built directly reads as pino's record through textLine (level, id, component, escapes)", () => {
  const lines: string[] = [];
  const log = new Logger({ service: "nve", id: "nve-a", dest: { write: (s: string) => lines.push(s) } });
  const cases: [string, "info" | "warn" | "fatal", string | undefined, string][] = [
    ["mqtt: nve-a serving nvo3-hv/1", "info", "mqtt", "nve-a serving nvo3-hv/1"],
    ["VNIC v1: Init → Associated (hv-1@acc0)", "info", undefined, "VNIC v1: Init → Associated (hv-1@acc0)"],
    ["broker: broker: auth refused: x\n2026 forged\u001b[2J\u2028", "warn", "broker", "auth refused: x\n2026 forged\u001b[2J\u2028"],
    ["FATAL: the store failed", "fatal", undefined, "FATAL: the store failed"],
  ];
  for (const [line, level, component, msg] of cases) {
    log.line(line); // the direct text line
    log.pino[level](component ? { component } : {}, msg); // pino's JSON, through textLine
  }
  assert.is(lines.length, cases.length * 2);
  const noTime = (l: string) => l.slice(l.indexOf(" ") + 1);
  for (let i = 0; i < lines.length; i += 2) {
    assert.match(lines[i], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /, "an ISO time first");
    assert.is(noTime(lines[i]), noTime(lines[i + 1]));
  }
  assert.ok(lines[4].includes("WARN  nve-a broker: auth refused: x\\x0a2026 forged\\x1b[2J\\u2028"), lines[4]);
  assert.is(lines[4].split("\n").length, 2, "one line and its newline");
});

test.run();
