// The whole issue-5 stack in the veth lab, once per test file: `labUp` on a
// lab id and state directory of its own, the embedded broker reached from each
// namespace through the lab's loopback/unix-socket relays (host/lab/relay.ts),
// both NVEs (`nvedge run --io afpacket`) in their namespaces, one agent daemon
// per hypervisor (`nvedge agent run`), every VM attached with
// `nvedge agent attach --port` so the agent gives its OVS port the tag the NVE
// returned (the agent's port driver, host/agent/driver.ts) — the sequence `nvedge lab demo`
// runs (host/lab/demo.ts), which keeps it inside one function, so the steps
// are taken here from the same building blocks.
//
// `close()` takes EVERYTHING down whatever happened (processes it started,
// broker, relays, the lab's namespaces and OVS daemons, the state directory)
// and reports what, if anything, survived; an exit or signal in between runs a
// synchronous emergency teardown. Every wait is bounded.
//
// Also here: the traffic helpers the end-to-end tests share (bounded ping, a
// checked TCP transfer, raw frame injection, data-plane counters).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, connect, type Server } from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { labUp, labDown } from "../../host/lab/engine.js";
import { labOvsInstances, labNamespaces, describeLab, type LabDescription, type LabVm } from "../../host/lab/topology.js";
import { getPortTag } from "../../host/agent/ovs-driver.js";
import { ovsPids } from "../../host/lab/ovs.js";
import { pipeBoth } from "../../host/lab/relay.js";
import { shAsync, sleep, netnsList } from "../../host/sys/sh.js";
import { startEmbeddedBroker } from "../../host/broker/embedded.js";
import { parsePcap, type PcapPacket } from "../../host/pcap/pcap.js";
import { injector } from "./io-net.js";
import { daemonRequest } from "../../host/agent/control-client.js";
import { dropDelta, type Counters } from "./frames.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const BIN = `${ROOT}bin/nvedge.js`;
const RELAY = `${ROOT}dist/host/lab/relay.js`;
/** The port each namespace's relay listens on (its own loopback, so the same everywhere). */
const MQTT_PORT = 1883;

/** The data plane's counters as `nvedge show counters --json` gives them (frames.ts Counters). */
export type DpCounters = Counters;

export interface StackOptions {
  /** Worker threads per NVE (`nvedge run --workers`); default 1. */
  workers?: Record<string, number>;
  /**
   * Runs the mapping authority (`nvedge ima run`, PROTOCOL.md §6) seeded with
   * the lab's VNs, and gives every NVE config an `ima` key (issue 6).
   */
  ima?: boolean;
  log?: (line: string) => void;
}

interface Proc { name: string; child: ChildProcess; log: string; exit?: number | string | null }

export interface LabStack {
  lab: LabDescription;
  /** The tag the NVE returned for each VM (by VM name), as set on its OVS port. */
  tags: Record<string, number>;
  vm(name: string): LabVm;
  storeOf(nve: string): string;
  /** `nvedge show counters --json` of an NVE (the data plane's totals summed over its workers). */
  counters(nve: string): Promise<DpCounters>;
  /** The last lines of every log (or one), for failure messages. */
  logs(name?: string, lines?: number): string;
  /** Names of the processes the fixture started that have exited. */
  dead(): string[];
  /** A scratch directory inside the state directory. */
  scratch: string;
  /** The control socket of a hypervisor's agent daemon (`nvedge agent ... --socket`). */
  agentSocket(hv: string): string;
  close(): Promise<Leftovers>;
}

export interface Leftovers { namespaces: string[]; pids: number[]; stateDir: boolean }

/**
 * The stack a suite's tests share, checked before each use: a clear error
 * when the first test never brought it up, or when one of its processes has
 * exited since (with the logs).
 */
export function liveStack(s: LabStack | undefined): LabStack {
  if (!s) throw new Error("the stack is not up (see the first test's failure)");
  const dead = s.dead();
  if (dead.length) throw new Error(`stack processes exited: ${dead.join(", ")}\n${s.logs()}`);
  return s;
}

/** What of a lab is still there: namespaces, processes naming its state directory or living in its namespaces. */
export function leftovers(d: LabDescription): Leftovers {
  const present = new Set(netnsList());
  const namespaces = labNamespaces(d).filter((n) => present.has(n));
  const pids = new Set<number>();
  for (const o of labOvsInstances(d)) for (const p of ovsPids(o)) pids.add(p);
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "utf8");
      const st = readFileSync(`/proc/${e}/stat`, "utf8");
      if (cmd.includes(d.stateDir + "/") && !/\) [ZX] /.test(st)) pids.add(Number(e));
    } catch { /* exited */ }
  }
  for (const n of namespaces) {
    const r = spawnSync("ip", ["netns", "pids", n], { encoding: "utf8" });
    for (const p of (r.stdout ?? "").split(/\s+/).filter(Boolean)) pids.add(Number(p));
  }
  return { namespaces, pids: [...pids], stateDir: existsSync(d.stateDir) };
}

/** Synchronous last resort (process exit, signal): SIGKILL everything of the lab, delete its namespaces and files. */
function hardDown(d: LabDescription, procs: Proc[]): void {
  for (const p of procs) { try { p.child.kill("SIGKILL"); } catch { /* gone */ } }
  for (const p of leftovers(d).pids) { try { process.kill(p, "SIGKILL"); } catch { /* gone */ } }
  for (const n of labNamespaces(d)) spawnSync("ip", ["netns", "del", n], { stdio: "ignore" });
  rmSync(d.stateDir, { recursive: true, force: true });
}

/** Brings the lab and the whole nvedge stack up; on any failure takes it all down again and throws. */
export async function startLabStack(o: StackOptions = {}): Promise<LabStack> {
  const say = o.log ?? (() => {});
  const id = "e" + randomBytes(3).toString("hex");
  // Short: OVS unix socket paths must stay under 108 bytes (host/lab/ovs.ts).
  const stateDir = mkdtempSync("/tmp/nvl-e2e-");
  const expected = describeLab({ id, stateDir });
  const logDir = `${stateDir}/e2e`;
  mkdirSync(logDir, { recursive: true });
  const procs: Proc[] = [];
  let broker: { close(): Promise<void>; port: number } | undefined;
  let bridge: Server | undefined;
  let closed: Promise<Leftovers> | undefined;

  const onExit = () => hardDown(expected, procs);
  const onSignal = (sig: NodeJS.Signals) => { hardDown(expected, procs); process.kill(process.pid, sig); };
  process.on("exit", onExit);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const spawnIn = (name: string, ns: string, argv: string[], env: NodeJS.ProcessEnv = {}): Proc => {
    const log = `${logDir}/${name}.log`;
    const out = createWriteStream(log);
    // `ip netns exec` execs the command: the child's pid is the command's. ns "" = the root namespace.
    const child = ns === "" ? spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } }) : spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    const p: Proc = { name, child, log };
    child.on("exit", (c, s) => { p.exit = c ?? s; });
    procs.push(p);
    return p;
  };
  const logs = (name?: string, lines = 15) => procs.filter((p) => !name || p.name === name).map((p) => {
    let text = "";
    try { text = readFileSync(p.log, "utf8"); } catch { /* none */ }
    return `--- ${p.name}${p.exit !== undefined ? ` (exited ${p.exit})` : ""}\n${text.trimEnd().split("\n").slice(-lines).join("\n")}`;
  }).join("\n");
  const dead = () => procs.filter((p) => p.exit !== undefined).map((p) => `${p.name} (${p.exit})`);

  const close = (): Promise<Leftovers> => closed ??= (async () => {
    try {
      for (const p of procs) if (p.exit === undefined) p.child.kill("SIGTERM");
      await Promise.race([Promise.all(procs.map((p) => p.exit !== undefined ? undefined : new Promise((r) => p.child.once("exit", r)))), sleep(5000)]);
      for (const p of procs) if (p.exit === undefined) p.child.kill("SIGKILL");
      bridge?.close();
      await broker?.close().catch(() => {});
      await labDown(expected).catch((e) => say(`labDown: ${(e as Error).message}`));
      rmSync(stateDir, { recursive: true, force: true });
      const left = leftovers(expected);
      if (left.namespaces.length || left.pids.length || left.stateDir) hardDown(expected, procs);
      return left;
    } finally {
      process.removeListener("exit", onExit);
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
    }
  })();

  try {
    const t0 = Date.now();
    const lab = await labUp({ id, stateDir });
    say(`lab ${id} up in ${Date.now() - t0} ms (${stateDir})`);

    // The broker on the root namespace's loopback, a unix socket in front of it,
    // and a relay on 127.0.0.1:1883 in every namespace that speaks MQTT.
    const b = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves: lab.nves.map((n) => n.id), log: () => {} });
    broker = b;
    const sock = `${stateDir}/relay-broker.sock`;
    bridge = createServer((c) => pipeBoth(c, connect(b.port, "127.0.0.1")));
    await new Promise<void>((r, j) => { bridge!.once("error", j); bridge!.listen(sock, () => r()); });
    const relays = [...lab.nves.map((n) => n.ns), ...lab.hypervisors.map((h) => h.ns)].map((ns) =>
      spawnIn(`relay-${ns}`, ns, [process.execPath, RELAY, "127.0.0.1", String(MQTT_PORT), sock]));
    await waitFor("the relays to listen", 10_000, () => relays.every((p) => readLog(p).includes("relay ready")), () => logs());
    const brokerUrl = `mqtt://127.0.0.1:${MQTT_PORT}`;

    const storeOf = (nve: string) => `${stateDir}/${nve}-store`;
    const configOf = new Map(lab.nves.map((n) => [n.id, n.config]));
    if (o.ima) {
      // The IMA in the root namespace, straight on the broker's loopback port; seeded with the
      // VNs the NVE configs define (the same records, so the catalogs agree from the start).
      const vns = (JSON.parse(readFileSync(lab.nves[0].config, "utf8")) as { vns: unknown[] }).vns;
      // PROTOCOL.md §6: the IMA serves only the NVEs it lists, each with its underlay IP.
      const nves = lab.nves.map((n) => ({ id: n.id, ip: n.underlay.ip }));
      writeFileSync(`${logDir}/ima.json`, JSON.stringify({ ima: "ima", nves, vns }));
      const ima = spawnIn("ima", "", [process.execPath, BIN, "ima", "run", "--config", `${logDir}/ima.json`, "--broker", `mqtt://127.0.0.1:${b.port}`, "--store", `${stateDir}/ima-store`]);
      await waitFor("the IMA to serve", 15_000, () => { if (ima.exit !== undefined) throw new Error(logs("ima")); return readLog(ima).includes("serving PROTOCOL.md"); }, () => logs("ima"));
      for (const n of lab.nves) {
        const file = `${logDir}/${n.id}.ima.json`;
        writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(n.config, "utf8")), ima: { id: "ima" } }));
        configOf.set(n.id, file);
      }
    }
    for (const n of lab.nves) {
      spawnIn(n.id, n.ns, [process.execPath, BIN, "run", "--config", configOf.get(n.id)!, "--broker", brokerUrl, "--io", "afpacket",
        "--workers", String(o.workers?.[n.id] ?? 1), "--store", storeOf(n.id)]);
    }
    const counters = async (nve: string): Promise<DpCounters> => {
      const r = await shAsync([process.execPath, BIN, "show", "counters", "--json", "--store", storeOf(nve)], { timeoutMs: 10_000 });
      const data = JSON.parse(r.stdout);
      return (data.counters ?? data) as DpCounters;
    };
    // Up = the admin socket answers with data-plane counters (store open, workers running).
    await waitFor("the NVEs to answer on their admin sockets", 30_000, async () => {
      if (dead().length) throw new Error(`exited: ${dead().join(", ")}\n${logs()}`);
      for (const n of lab.nves) {
        if (!existsSync(`${storeOf(n.id)}/nvedge.sock`)) return false;
        try { await counters(n.id); } catch { return false; }
      }
      return true;
    }, () => logs());

    const agentSock = (hv: string) => `${logDir}/agent-${hv}.sock`;
    for (const h of lab.hypervisors) {
      spawnIn(`agent-${h.id}`, h.ns, [process.execPath, BIN, "agent", "run", "--broker", brokerUrl, "--hv", h.id, "--nve", h.nve,
        "--state", `${logDir}/agent-${h.id}.json`, "--socket", agentSock(h.id), "--ovs-db", h.ovs.db]);
    }
    // A bound, not a figure: three Node processes start here, which takes ~20 s alone on a loaded 2-core machine.
    await waitFor("the agents to connect to their NVEs", 60_000, async () => {
      if (dead().length) throw new Error(`exited: ${dead().join(", ")}\n${logs()}`);
      // Asked on the agent's control socket from here: `nvedge agent show` is another Node process to start each time.
      for (const h of lab.hypervisors) {
        const r = await daemonRequest(agentSock(h.id), { cmd: "show" }, 5000).catch(() => undefined) as { connected?: boolean } | undefined;
        if (!r?.connected) return false;
      }
      return true;
    }, () => logs());

    // Attach every VM through its hypervisor's agent, which puts the NVE's tag on the VM's OVS port.
    const tags: Record<string, number> = {};
    for (const v of lab.vms) {
      const h = lab.hypervisors.find((x) => x.id === v.hv)!;
      const vn = lab.vns.find((x) => x.id === v.vn)!;
      const r = await shAsync([process.execPath, BIN, "agent", "attach", "--vnic", v.vnic, "--vn", vn.alias, "--mac", v.mac, "--ip", v.ip,
        "--port", v.ovsPort, "--json", "--socket", agentSock(h.id)], { allowFail: true, timeoutMs: 20_000 });
      if (r.code !== 0) throw new Error(`nvedge agent attach ${v.name} on ${h.id} failed (${r.code}): ${r.stderr.trim()}\n${logs()}`);
      const tag = (JSON.parse(r.stdout) as { tag: number }).tag;
      if (await getPortTag(h.ovs.db, v.ovsPort) !== tag) throw new Error(`OVS port ${v.ovsPort} did not take tag ${tag}`);
      tags[v.name] = tag;
    }
    say(`stack up in ${Date.now() - t0} ms: tags ${JSON.stringify(tags)}`);

    const scratch = `${stateDir}/scratch`;
    mkdirSync(scratch);
    return {
      lab, tags, storeOf, counters, logs, dead, scratch, close, agentSocket: agentSock,
      vm: (name) => {
        const v = lab.vms.find((x) => x.name === name);
        if (!v) throw new Error(`no VM ${name} in the lab`);
        return v;
      },
    };
  } catch (e) {
    const text = logs();
    await close();
    if (e instanceof Error && !e.message.includes("--- ")) e.message += `\n${text}`;
    throw e;
  }
}

function readLog(p: Proc): string {
  try { return readFileSync(p.log, "utf8"); } catch { return ""; }
}

/** Polls `cond` every 200 ms until it is true; throws naming `what` after `ms`. */
export async function waitFor(what: string, ms: number, cond: () => boolean | Promise<boolean>, detail: () => string = () => ""): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(200);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}\n${detail()}`);
}

// ---- traffic ------------------------------------------------------------------

export interface PingResult { sent: number; received: number; out: string }

/** A bounded ping from a namespace: `count` echoes `intervalS` apart, each waited for at most 2 s. */
export async function ping(ns: string, dst: string, o: { count?: number; intervalS?: number; size?: number; dontFragment?: boolean } = {}): Promise<PingResult> {
  const count = o.count ?? 3, interval = o.intervalS ?? 0.2;
  const argv = ["ping", "-n", "-c", String(count), "-i", String(interval), "-W", "2",
    ...(o.size !== undefined ? ["-s", String(o.size)] : []), ...(o.dontFragment ? ["-M", "do"] : []), dst];
  const r = await shAsync(argv, { ns, allowFail: true, timeoutMs: (count * interval + 5) * 1000 });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  return { sent: m ? Number(m[1]) : 0, received: m ? Number(m[2]) : 0, out: `${ns}$ ${argv.join(" ")}\n${r.stdout}${r.stderr}` };
}

/**
 * Pings once a second until one echo is answered (bounded): a path's first
 * packets may be spent resolving neighbours (OVS's tunnel next hop, a VM's
 * ARP) or waiting for OVS to revalidate its flows after a tag change.
 */
export async function warmUp(ns: string, dst: string, ms = 10_000): Promise<void> {
  let last = "";
  await waitFor(`an answer from ${dst} in ${ns}`, ms, async () => {
    const r = await ping(ns, dst, { count: 1 });
    last = r.out;
    return r.received === 1;
  }, () => last);
}

const SERVER_PY = `
import socket, hashlib, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(float(sys.argv[3]))
print("listening", flush=True)
c, peer = s.accept()
c.settimeout(float(sys.argv[3]))
h = hashlib.sha256()
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
c.sendall(("%d %s\\n" % (n, h.hexdigest())).encode())
c.close()
print("received %d %s from %s" % (n, h.hexdigest(), peer[0]), flush=True)
`;

const CLIENT_PY = `
import socket, sys
data = open(sys.argv[3], "rb").read()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]))
s.sendall(data)
s.shutdown(socket.SHUT_WR)
r = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    r += b
print(r.decode().strip(), flush=True)
`;

export interface TransferResult {
  /** What the server counted and hashed, as it reported to the client: "<bytes> <sha256>". */
  echoed: string;
  /** The server's own line: "received <bytes> <sha256> from <client ip>". */
  server: string;
  expected: string;
  detail: string;
}

/**
 * A TCP transfer of `bytes` random bytes from `client.ns` to a Python server
 * on `server.ip` in `server.ns`, which answers with the length and SHA-256 of
 * what it received. Bounded by `timeoutS` on each side.
 */
export async function tcpTransfer(scratch: string, server: { ns: string; ip: string }, client: { ns: string }, bytes: number, timeoutS = 15): Promise<TransferResult> {
  const payload = randomBytes(bytes);
  const file = `${scratch}/payload-${randomBytes(4).toString("hex")}`;
  writeFileSync(file, payload);
  const expected = `${bytes} ${createHash("sha256").update(payload).digest("hex")}`;
  const port = String(20000 + (randomBytes(2).readUInt16BE(0) % 10000));
  const srv = spawn("ip", ["netns", "exec", server.ns, "python3", "-c", SERVER_PY, server.ip, port, String(timeoutS)], { stdio: ["ignore", "pipe", "pipe"] });
  const killer = setTimeout(() => srv.kill("SIGKILL"), (timeoutS + 5) * 1000);
  let out = "", err = "";
  srv.stdout!.setEncoding("utf8").on("data", (d) => (out += d));
  srv.stderr!.setEncoding("utf8").on("data", (d) => (err += d));
  const srvDone = new Promise<void>((r) => srv.on("close", () => r()));
  try {
    // a bound, not a timing: python3 starting in a namespace took over 5 s on a machine loaded to 10
    await waitFor(`the TCP server on ${server.ip}:${port}`, 20_000, () => out.includes("listening") || srv.exitCode !== null);
    const c = await shAsync(["python3", "-c", CLIENT_PY, server.ip, port, file, String(timeoutS)], { ns: client.ns, allowFail: true, timeoutMs: (timeoutS + 5) * 1000 });
    await Promise.race([srvDone, sleep(3000)]);
    const line = out.split("\n").find((l) => l.startsWith("received")) ?? "";
    return { echoed: c.stdout.trim(), server: line, expected,
             detail: `client (${client.ns}) exit ${c.code}: ${c.stdout}${c.stderr}\nserver (${server.ns} ${server.ip}:${port}): ${out}${err}` };
  } finally {
    clearTimeout(killer);
    srv.kill("SIGKILL");
    rmSync(file, { force: true });
  }
}

/** Sends raw frames out of a namespace's interface with a plain Python AF_PACKET socket (an injector independent of nvedge). */
export async function injectFrames(ns: string, ifname: string, frames: Uint8Array[]): Promise<void> {
  const { script, input } = injector(ifname, frames);
  await shAsync(["python3", "-c", script], { ns, input, timeoutMs: 10_000 });
}

export interface Sniffer {
  /** Stops the capture (after a moment for the last frames to land) and returns every frame seen. */
  stop(): Promise<Uint8Array[]>;
  /** As stop(), with each frame's capture timestamp. */
  stopTimed(): Promise<PcapPacket[]>;
}

/**
 * A tcpdump capture on a namespace's interface, bounded by `timeoutMs`, in
 * immediate mode: without it libpcap's TPACKET_V3 ring hands frames over only
 * when a block fills or its 1 s timer fires, and a capture stopped sooner
 * loses what it saw (an empty capture would then "prove" that nothing passed).
 */
export async function sniff(ns: string, ifname: string, o: { filter?: string[]; direction?: "in" | "out" | "inout"; timeoutMs?: number } = {}): Promise<Sniffer> {
  const secs = Math.ceil((o.timeoutMs ?? 20_000) / 1000);
  const child = spawn("ip", ["netns", "exec", ns, "timeout", String(secs), "tcpdump", "-i", ifname, "--immediate-mode", "-Q", o.direction ?? "inout",
    "-U", "-n", "-s", "0", "-w", "-", ...(o.filter ?? [])], { stdio: ["ignore", "pipe", "pipe"] });
  const chunks: Buffer[] = [];
  child.stdout!.on("data", (c: Buffer) => chunks.push(c));
  let err = "";
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`tcpdump on ${ns}/${ifname} did not start: ${err}`)); }, 5000);
    child.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      if (err.includes("listening on")) { clearTimeout(t); resolve(); }
    });
    child.on("exit", () => { clearTimeout(t); reject(new Error(`tcpdump on ${ns}/${ifname} exited: ${err.trim()}`)); });
  });
  const stopTimed = async (): Promise<PcapPacket[]> => {
    await sleep(200);
    child.kill("SIGTERM");
    await Promise.race([closed, sleep(3000)]);
    child.kill("SIGKILL");
    const buf = Buffer.concat(chunks);
    if (buf.length < 24) throw new Error(`tcpdump on ${ns}/${ifname} wrote no capture: ${err.trim()}`);
    return parsePcap(buf, `tcpdump ${ns}/${ifname}`).packets;
  };
  return { stopTimed, stop: async () => (await stopTimed()).map((p) => p.frame) };
}

/** Per-reason drop increases between two counter snapshots (frames.ts dropDelta, for the e2e tests). */
export { dropDelta };
