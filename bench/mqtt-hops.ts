// Where a paced request's time goes, hop by hop (issue 15 "paced p99 < 5 ms"):
// a loopback capture of the bench's broker port (tcpdump, pcap with
// nanosecond stamps: NVEDGE_BENCH_PACED_PCAP in bench/control.ts) read with
// the paced trace (NVEDGE_BENCH_PACED_TRACE: each request's issue time and
// latency in the agents' process). A segment's stamp is taken as the
// sender's write(2) hands it to the loopback, so each MQTT packet gives the
// time its sender let it go:
//
//   issued (trace) ─agent─▶ req PUBLISH agent→broker ─broker─▶ req PUBLISH broker→NVE
//   ─NVE queue─▶ the NVE's PUBACK of it (sent in the turn that read it: mqtt-lean.ts delivered())
//   (broker_window: the broker held the request, 20 already unacknowledged by the NVE: BROKER_WINDOW)
//   ─NVE─▶ rsp PUBLISH NVE→broker ─broker─▶ rsp PUBLISH broker→agent ─agent─▶ answered (trace)
//
// "NVE queue" is the request waiting in the NVE's socket (the NVE busy, in a
// pause, or waiting for its CPU) plus the turn's work before its writes
// leave; "NVE" is its work from that turn to the answer (the group commit).
// The trace's and the capture's clocks are both CLOCK_REALTIME
// (performance.timeOrigin + now() in the trace), within a few µs.
//   node dist/bench/mqtt-hops.js CAPTURE.pcap TRACE.txt [--port N] [--json]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { quantile } from "./stats.js";

/** One MQTT PUBLISH or PUBACK seen on the wire: when (ms since the epoch), on which connection, which way. */
export interface WirePacket { t: number; conn: number; toBroker: boolean; type: number; packetId: number; topic?: string; id?: string }

/** The MQTT packets of a pcap (DLT_EN10MB or Linux cooked; IPv4 TCP to or from `port`), per connection reassembled in sequence order. */
export function mqttPackets(pcap: Buffer, port: number): WirePacket[] {
  const magic = pcap.readUInt32LE(0);
  const nano = magic === 0xa1b23c4d;
  if (magic !== 0xa1b2c3d4 && !nano) throw new Error("not a little-endian pcap file (tcpdump -w)");
  const link = pcap.readUInt32LE(20);
  const l2 = link === 1 ? 14 : link === 113 ? 16 : -1;
  if (l2 < 0) throw new Error(`pcap link type ${link}: expected Ethernet (1) or Linux cooked (113)`);
  const streams = new Map<string, { next: number; buf: Buffer; conn: number; toBroker: boolean }>();
  const conns = new Map<number, number>(); // client port → connection number
  const out: WirePacket[] = [];
  for (let o = 24; o + 16 <= pcap.length;) {
    const sec = pcap.readUInt32LE(o), frac = pcap.readUInt32LE(o + 4), incl = pcap.readUInt32LE(o + 8);
    const t = sec * 1000 + (nano ? frac / 1e6 : frac / 1e3);
    const p = pcap.subarray(o + 16, o + 16 + incl);
    o += 16 + incl;
    if (p.length < l2 + 40 || p.readUInt16BE(l2 - 2) !== 0x0800) continue;
    const ip = l2, ihl = (p[ip] & 15) * 4, totLen = p.readUInt16BE(ip + 2);
    if (p[ip + 9] !== 6) continue;
    const tcp = ip + ihl, sport = p.readUInt16BE(tcp), dport = p.readUInt16BE(tcp + 2);
    if (sport !== port && dport !== port) continue;
    const seq = p.readUInt32BE(tcp + 4), doff = (p[tcp + 12] >> 4) * 4, flags = p[tcp + 13];
    const data = p.subarray(tcp + doff, Math.min(p.length, ip + totLen));
    const toBroker = dport === port, client = toBroker ? sport : dport;
    if (!conns.has(client)) conns.set(client, conns.size);
    const key = `${sport}>${dport}`;
    let s = streams.get(key);
    if (!s || flags & 2) { // SYN: a new connection on this port pair
      s = { next: (seq + (flags & 2 ? 1 : 0)) >>> 0, buf: Buffer.alloc(0), conn: conns.get(client)!, toBroker };
      streams.set(key, s);
      if (flags & 2) continue;
    }
    if (!data.length) continue;
    // in order only: a retransmission of what was seen is skipped, its new tail kept
    const skip = (s.next - seq) | 0;
    if (skip < 0) { s.buf = Buffer.alloc(0); s.next = seq; } // a hole (capture dropped): start over at this segment
    if (skip >= data.length) continue;
    s.buf = Buffer.concat([s.buf, data.subarray(Math.max(0, skip))]);
    s.next = (seq + data.length) >>> 0;
    // whole MQTT frames (fixed header, remaining length: 3.1.1 §2.2)
    let f = 0;
    for (;;) {
      let i = f + 1, len = 0, mul = 1, b = 128;
      while (b & 128 && i < s.buf.length && i - f <= 4) { b = s.buf[i++]; len += (b & 127) * mul; mul *= 128; }
      if (b & 128 || i + len > s.buf.length) break;
      const type = s.buf[f] >> 4, qos = (s.buf[f] >> 1) & 3;
      if (type === 3) {
        const tl = s.buf.readUInt16BE(i), topic = s.buf.toString("utf8", i + 2, i + 2 + tl);
        let q = i + 2 + tl, packetId = 0;
        if (qos) { packetId = s.buf.readUInt16BE(q); q += 2; }
        const m = /^\s*\{\s*"id"\s*:\s*"([^"]*)"/.exec(s.buf.toString("utf8", q, Math.min(q + 200, i + len)));
        out.push({ t, conn: s.conn, toBroker: s.toBroker, type, packetId, topic, id: m?.[1] });
      } else if (type === 4) out.push({ t, conn: s.conn, toBroker: s.toBroker, type, packetId: s.buf.readUInt16BE(i) });
      f = i + len;
    }
    s.buf = s.buf.subarray(f);
  }
  return out;
}

export const HOPS = ["agent_send", "broker_in", "broker_window", "nve_queue", "nve", "broker_out", "agent_receive"] as const;
/**
 * Mosquitto's max_inflight_messages (20, its default, for an MQTT 3.1.1
 * client): with that many requests delivered to the NVE and not yet
 * acknowledged, the broker holds the next ones. A request that reached the
 * broker then waits for the NVE (paused, or waiting for its CPU) in the
 * broker instead of in the NVE's socket: `broker_window`, not `broker_in`.
 */
export const BROKER_WINDOW = 20;
export type Hop = typeof HOPS[number];

/** Each traced request's hops in ms (those whose four publishes were all captured). */
export function hopsOf(pk: WirePacket[], trace: { start: number; ms: number; agent: number; job: number }[], hvOf: (agent: number) => string): { req: { start: number; ms: number }; hops: Record<Hop, number> }[] {
  // the request's id is `${hv}-${seq}` (agent.ts requestOnce); the trace names the agent and its job, so
  // requests are matched by the id of each agent's publishes in the order they were issued
  const byId = new Map<string, { a?: number; b?: number; q?: number; c?: number; d?: number; full?: boolean }>();
  const unacked = new Map<number, number>(); // per connection: publishes the broker delivered (QoS 1) and the client has not acknowledged
  const at = (id: string) => byId.get(id) ?? (byId.set(id, {}), byId.get(id)!);
  const ackWait = new Map<string, string>(); // conn:packetId of a request delivered to the NVE → its id
  for (const p of pk) {
    if (p.type === 3 && p.id !== undefined && p.topic) {
      const isReq = p.topic.includes("/req/");
      const e = at(p.id);
      if (isReq && p.toBroker) { e.a ??= p.t; e.full ??= [...unacked.values()].some((n) => n >= BROKER_WINDOW); }
      else if (isReq) { e.b ??= p.t; ackWait.set(`${p.conn}:${p.packetId}`, p.id); unacked.set(p.conn, (unacked.get(p.conn) ?? 0) + 1); }
      else if (p.toBroker) e.c ??= p.t;
      else e.d ??= p.t;
    } else if (p.type === 4 && p.toBroker) {
      const k = `${p.conn}:${p.packetId}`, id = ackWait.get(k);
      if (id !== undefined) { ackWait.delete(k); at(id).q ??= p.t; unacked.set(p.conn, (unacked.get(p.conn) ?? 1) - 1); }
    }
  }
  // an agent's requests in the order it sent them (the trace's jobs run in order per agent, ids rise with them)
  const perHv = new Map<string, { id: string; a: number }[]>();
  for (const [id, e] of byId) {
    if (e.a === undefined) continue;
    const hv = id.slice(0, id.lastIndexOf("-"));
    (perHv.get(hv) ?? (perHv.set(hv, []), perHv.get(hv)!)).push({ id, a: e.a });
  }
  for (const l of perHv.values()) l.sort((x, y) => Number(x.id.slice(x.id.lastIndexOf("-") + 1)) - Number(y.id.slice(y.id.lastIndexOf("-") + 1)));
  const byAgent = new Map<number, typeof trace>();
  for (const r of trace) (byAgent.get(r.agent) ?? (byAgent.set(r.agent, []), byAgent.get(r.agent)!)).push(r);
  const res: ReturnType<typeof hopsOf> = [];
  for (const [agent, rs] of byAgent) {
    rs.sort((x, y) => x.start - y.start);
    const sent = perHv.get(hvOf(agent)) ?? [];
    // the capture started before the case: the agent's last len(rs) requests are the case's
    const mine = sent.slice(Math.max(0, sent.length - rs.length));
    for (let k = 0; k < rs.length && k < mine.length; k++) {
      const e = byId.get(mine[k].id)!, r = rs[k];
      if (e.a === undefined || e.b === undefined || e.q === undefined || e.c === undefined || e.d === undefined) continue;
      res.push({ req: { start: r.start, ms: r.ms }, hops: { agent_send: e.a - r.start, broker_in: e.full ? 0 : e.b - e.a, broker_window: e.full ? e.b - e.a : 0, nve_queue: e.q - e.b, nve: e.c - e.q, broker_out: e.d - e.c, agent_receive: r.start + r.ms - e.d } });
    }
  }
  return res;
}

/** The trace file's request lines ("START MS AGENT JOB") and its other lines ("gc START MS", "stall START MS"). */
export function readTrace(text: string): { reqs: { start: number; ms: number; agent: number; job: number }[]; events: { kind: string; start: number; ms: number }[] } {
  const reqs: { start: number; ms: number; agent: number; job: number }[] = [], events: { kind: string; start: number; ms: number }[] = [];
  for (const l of text.split("\n")) {
    const f = l.trim().split(" ");
    if (f.length === 4) reqs.push({ start: Number(f[0]), ms: Number(f[1]), agent: Number(f[2]), job: Number(f[3]) });
    else if (f.length === 3) events.push({ kind: f[0], start: Number(f[1]), ms: Number(f[2]) });
  }
  return { reqs, events };
}

/** The hops' summary: over all requests, and over those above the end-to-end p99 (where their time went). */
export function summarize(rows: ReturnType<typeof hopsOf>, events: { kind: string; start: number; ms: number }[] = []): object {
  const r2 = (x: number) => Math.round(x * 1000) / 1000;
  const e2e = rows.map((r) => r.req.ms).sort((a, b) => a - b);
  const p99 = quantile(e2e, 0.99, true);
  const slow = rows.filter((r) => r.req.ms > p99);
  const stat = (rs: typeof rows) => Object.fromEntries(HOPS.map((h) => {
    const v = rs.map((r) => r.hops[h]).sort((a, b) => a - b);
    return [h, { p50: r2(quantile(v, 0.5, true)), p99: r2(quantile(v, 0.99, true)), mean: r2(v.reduce((s, x) => s + x, 0) / Math.max(1, v.length)) }];
  }));
  // per slow request, the hop that took most of it; and whether an agents' GC or loop stall overlapped it
  const main = new Map<string, number>();
  let overlapped = 0;
  for (const r of slow) {
    const h = HOPS.reduce((m, x) => (r.hops[x] > r.hops[m] ? x : m), HOPS[0]);
    main.set(h, (main.get(h) ?? 0) + 1);
    if (events.some((e) => e.start < r.req.start + r.req.ms && e.start + e.ms > r.req.start)) overlapped++;
  }
  const share = Object.fromEntries(HOPS.map((h) => [h, r2(slow.reduce((s, r) => s + r.hops[h], 0) / Math.max(1e-9, slow.reduce((s, r) => s + r.req.ms, 0)))]));
  return { requests: rows.length, e2e_p50_ms: r2(quantile(e2e, 0.5, true)), e2e_p99_ms: r2(p99), all: stat(rows), above_p99: { requests: slow.length, hops: stat(slow), time_share: share, largest_hop: Object.fromEntries(main), agents_gc_or_stall_overlap: overlapped } };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [pcapFile, traceFile, ...rest] = process.argv.slice(2);
  if (!pcapFile || !traceFile) {
    console.error("usage: node dist/bench/mqtt-hops.js CAPTURE.pcap TRACE.txt --port N [--hv-prefix hv-]");
    process.exit(2);
  }
  const port = Number(rest[rest.indexOf("--port") + 1]);
  if (!rest.includes("--port") || !Number.isInteger(port)) { console.error("--port N: the broker's port"); process.exit(2); }
  const { reqs, events } = readTrace(readFileSync(traceFile, "utf8"));
  const rows = hopsOf(mqttPackets(readFileSync(pcapFile), port), reqs, (a) => `hv-${a}`);
  console.log(JSON.stringify(summarize(rows, events), null, 1));
}
