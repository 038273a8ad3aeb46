// The paced tail's attribution tool (bench/mqtt-hops.ts, issue 15): MQTT
// packets read from a loopback capture (pcap, nanosecond stamps, Ethernet,
// IPv4, TCP reassembled per direction) and each request's time put on its
// hops. The capture is built here byte by byte in the formats tcpdump writes
// (pcap-savefile(5), RFC 791, RFC 9293), with what a real one holds: two
// MQTT frames in one segment, a frame cut across two segments, a segment sent
// again, a PUBACK and an answer leaving together.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { hopsOf, mqttPackets, readTrace, summarize } from "../bench/mqtt-hops.js";
import { encodePublish4 } from "../host/protocol/mqtt-lean.js";

const BROKER = 1883;

/** A pcap file (nanosecond magic, DLT_EN10MB) of IPv4/TCP segments: [ms since the epoch, from port, to port, seq, payload]. */
function pcap(segs: [number, number, number, number, Buffer][]): Buffer {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b23c4d, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(262144, 16);
  head.writeUInt32LE(1, 20);
  const out = [head];
  for (const [ms, sport, dport, seq, data] of segs) {
    const eth = Buffer.alloc(14);
    eth.writeUInt16BE(0x0800, 12);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + 20 + data.length, 2);
    ip[8] = 64;
    ip[9] = 6;
    ip.writeUInt32BE(0x7f000001, 12);
    ip.writeUInt32BE(0x7f000001, 16);
    const tcp = Buffer.alloc(20);
    tcp.writeUInt16BE(sport, 0);
    tcp.writeUInt16BE(dport, 2);
    tcp.writeUInt32BE(seq >>> 0, 4);
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH ACK
    const pkt = Buffer.concat([eth, ip, tcp, data]);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(Math.floor(ms / 1000), 0);
    rec.writeUInt32LE(Math.round((ms % 1000) * 1e6), 4);
    rec.writeUInt32LE(pkt.length, 8);
    rec.writeUInt32LE(pkt.length, 12);
    out.push(rec, pkt);
  }
  return Buffer.concat(out);
}

const puback = (id: number) => Buffer.from([0x40, 2, id >> 8, id & 255]);
const req = (hv: string, seq: number, pid: number) => encodePublish4(`nvo3/v1/nve/n/req/${hv}`, `{"id":"${hv}-${seq}","op":"vnic.attach"}`, 1, false, pid);
const rsp = (hv: string, seq: number, pid: number) => encodePublish4(`nvo3/v1/hv/${hv}/rsp`, `{"id":"${hv}-${seq}","ok":true}`, 1, false, pid);

test("mqtt-hops: frames cut across segments, two in one, a segment sent again; each request's hops from the capture and the trace", () => {
  const T = 1_800_000_000_000; // ms
  const AG0 = 40000, AG1 = 40001, NVE = 40002; // client ports: agents hv-0, hv-1 and the NVE
  const r0 = req("hv-0", 7, 1), r1 = req("hv-1", 3, 1);
  const toNve = Buffer.concat([req("hv-0", 7, 11), req("hv-1", 3, 12)]);
  const cut = 9; // the NVE's read of both requests arrives in two segments, the first frame cut inside its topic
  const answers = Buffer.concat([puback(11), rsp("hv-0", 7, 21), puback(12), rsp("hv-1", 3, 22)]);
  const cap = pcap([
    [T + 1.0, AG0, BROKER, 100, r0],
    [T + 1.0, AG0, BROKER, 100, r0], // sent again (a retransmission): the same bytes, not a second request
    [T + 1.5, AG1, BROKER, 500, r1],
    [T + 2.0, BROKER, NVE, 9000, toNve.subarray(0, cut)],
    [T + 2.25, BROKER, NVE, 9000 + cut, toNve.subarray(cut)],
    [T + 4.0, NVE, BROKER, 7000, answers], // the NVE's PUBACKs and answers in one write
    [T + 4.5, BROKER, AG0, 300, rsp("hv-0", 7, 31)],
    [T + 6.0, BROKER, AG1, 700, rsp("hv-1", 3, 32)],
  ]);
  const pk = mqttPackets(cap, BROKER);
  assert.equal(pk.map((p) => [p.type, p.toBroker, p.id ?? p.packetId]), [
    [3, true, "hv-0-7"], [3, true, "hv-1-3"], [3, false, "hv-0-7"], [3, false, "hv-1-3"],
    [4, true, 11], [3, true, "hv-0-7"], [4, true, 12], [3, true, "hv-1-3"], [3, false, "hv-0-7"], [3, false, "hv-1-3"],
  ]);
  assert.is(pk[3].t, T + 2.25, "a frame is stamped with the segment that completes it");
  const { reqs, events } = readTrace(`${T + 0.9} 3.7 0 0\n${T + 1.4} 4.8 1 0\ngc.minor ${T + 5} 1.2\nstall ${T + 5.5} 2.5\n`);
  assert.equal(events.map((e) => e.kind), ["gc.minor", "stall"]);
  const rows = hopsOf(pk, reqs, (a) => `hv-${a}`).sort((a, b) => a.req.start - b.req.start);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  assert.equal(rows.map((x) => Object.fromEntries(Object.entries(x.hops).map(([k, v]) => [k, r(v)]))), [
    { agent_send: 0.1, broker_in: 1.25, broker_window: 0, nve_queue: 1.75, nve: 0, broker_out: 0.5, agent_receive: 0.1 },
    { agent_send: 0.1, broker_in: 0.75, broker_window: 0, nve_queue: 1.75, nve: 0, broker_out: 2, agent_receive: 0.2 },
  ]);
  for (const x of rows) assert.ok(Math.abs(Object.values(x.hops).reduce((s, v) => s + v, 0) - x.req.ms) < 0.01, "the hops add up to the request's latency (ms since the epoch in a double: ~0.25 µs steps)");
  const s = summarize(rows, events) as { requests: number; above_p99: { requests: number; agents_gc_or_stall_overlap: number } };
  assert.is(s.requests, 2);
  assert.is(s.above_p99.requests, 0, "nothing above the p99 of two");
});

test("mqtt-hops: a request that reaches the broker while 20 are unacknowledged by the NVE waits in broker_window, not broker_in", () => {
  const T = 1_800_000_000_000, NVE = 40100;
  const segs: [number, number, number, number, Buffer][] = [];
  let seqNve = 1000, seqAck = 5000;
  // 20 requests of agents hv-0..hv-19 delivered to the NVE, none acknowledged yet; then hv-20's arrives
  for (let k = 0; k <= 20; k++) {
    const r = req(`hv-${k}`, 1, 1);
    segs.push([T + k * 0.1, 41000 + k, BROKER, 100, r]);
    if (k < 20) { const f = req(`hv-${k}`, 1, 100 + k); segs.push([T + k * 0.1 + 0.05, BROKER, NVE, seqNve, f]); seqNve += f.length; }
  }
  // the NVE comes back: its PUBACKs and answers, then the broker lets hv-20's request go
  for (let k = 0; k < 20; k++) { const a = Buffer.concat([puback(100 + k), rsp(`hv-${k}`, 1, 200 + k)]); segs.push([T + 30, NVE, BROKER, seqAck, a]); seqAck += a.length; }
  const f20 = req("hv-20", 1, 120);
  segs.push([T + 30.2, BROKER, NVE, seqNve, f20]);
  seqNve += f20.length;
  const a20 = Buffer.concat([puback(120), rsp("hv-20", 1, 220)]);
  segs.push([T + 30.5, NVE, BROKER, seqAck, a20]);
  for (let k = 0; k <= 20; k++) segs.push([T + 31, BROKER, 41000 + k, 700, rsp(`hv-${k}`, 1, 300 + k)]);
  const trace = Array.from({ length: 21 }, (_, k) => `${T + k * 0.1 - 0.05} ${(31.1 - (k * 0.1 - 0.05)).toFixed(3)} ${k} 0`).join("\n");
  const rows = hopsOf(mqttPackets(pcap(segs), BROKER), readTrace(trace).reqs, (a) => `hv-${a}`).sort((a, b) => a.req.start - b.req.start);
  assert.is(rows.length, 21);
  assert.is(rows[0].hops.broker_window, 0);
  assert.ok(Math.abs(rows[0].hops.broker_in - 0.05) < 0.01);
  assert.is(rows[20].hops.broker_in, 0);
  assert.ok(Math.abs(rows[20].hops.broker_window - 28.2) < 0.01, String(rows[20].hops.broker_window));
});

test("mqtt-hops: refuses what is not a pcap, and a link type it cannot read", () => {
  assert.throws(() => mqttPackets(Buffer.alloc(24), BROKER), /not a little-endian pcap/);
  const p = pcap([]);
  p.writeUInt32LE(105, 20); // 802.11
  assert.throws(() => mqttPackets(p, BROKER), /link type 105/);
});

test.run();
