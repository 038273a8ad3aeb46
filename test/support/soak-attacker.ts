// The security soak's misbehaving hypervisor (test/security.test.ts, issue 10),
// in a process of its own as a real attacker would be, so the soak measures
// what its flood costs the NVE (and an embedded broker in the NVE's process),
// not the test process's own event loop. After `hello` it floods for `ms`:
// 50 `vn.profile` requests, every fifth round a ~200 KB sync chunk (read from
// `bigFile`), and a retained status flap, every 20 ms. It prints `ready` once
// its session is open and, at the end, `{"sent":N,"flaps":N}`; bounded by `ms`.
import mqtt from "mqtt";
import { readFileSync } from "node:fs";

const o = JSON.parse(process.argv[2]) as {
  url: string; protocolVersion: 4 | 5; username: string; password?: string; hv: string; nve: string; ms: number; bigFile: string; vn: unknown;
};
const big = readFileSync(o.bigFile, "utf8");
const c = await mqtt.connectAsync(o.url, {
  protocolVersion: o.protocolVersion, username: o.username, password: o.password,
  clientId: `${o.hv}-soak-${process.pid}`, reconnectPeriod: 0, connectTimeout: 10_000,
});
const rsp = `nvo3/v1/hv/${o.hv}/rsp`;
const req = `nvo3/v1/nve/${o.nve}/req/${o.hv}`;
await c.subscribeAsync(rsp, { qos: 1 });
// hello first on every session (PROTOCOL.md §2), answered before the flood starts
const hello = new Promise<void>((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("soak attacker: no answer to hello within 10 s")), 10_000);
  c.on("message", (topic, payload) => {
    if (topic !== rsp) return;
    const m = JSON.parse(payload.toString());
    if (m.id !== "hello") return;
    clearTimeout(t);
    m.ok ? resolve() : reject(new Error(`soak attacker: hello refused: ${payload}`));
  });
});
await c.publishAsync(req, JSON.stringify({ id: "hello", op: "hello", agent: "evil" }), { qos: 1 });
await hello;
process.stdout.write("ready\n");
const t0 = Date.now();
let sent = 0, flaps = 0;
for (let i = 0; Date.now() - t0 < o.ms; i++) {
  for (let k = 0; k < 50; k++, sent++) c.publish(req, JSON.stringify({ id: `f${i}-${k}`, op: "vn.profile", vn: o.vn }), { qos: 0 });
  if (i % 5 === 0) {
    c.publish(req, big.replace('"id":"big"', `"id":"big-${i}"`), { qos: 0 });
    sent++;
  }
  c.publish(`nvo3/v1/nve/${o.nve}/status/${o.hv}`, JSON.stringify({ state: i % 2 ? "online" : "offline" }), { qos: 0, retain: true });
  flaps++;
  await new Promise((r) => setTimeout(r, 20));
}
await c.endAsync();
process.stdout.write(`${JSON.stringify({ sent, flaps })}\n`);
