// Issue 4, "what it must show":
// - crash: an NVE process on an LMDB store, under a steady stream of
//   attach/detach/migrate requests from a test agent over a real broker, is
//   killed with SIGKILL at random moments (>= 20 times); after each restart its
//   state equals exactly the acknowledged requests (an unanswered request is
//   applied entirely or not at all), checked through the `show` op and by frames
//   through the restarted process's data plane;
// - restart: with bindings in place, a restarted NVE forwards again before it
//   reaches any broker (no agent action), tags are unchanged, an expired
//   migration hold fires at start and an unexpired one keeps its deadline.
//
// The crash test runs the real `nvedge run --io none --store DIR --broker URL`
// and traces frames through its live data plane over the admin socket. The
// restart test needs the data plane before any broker is reachable, when
// `nvedge run` has no admin socket yet (it starts once connected), so its NVE
// is NVE_CHILD below: the same parts `nvedge run` assembles (config loader,
// LMDB store, NveService over a DataPlane) plus a stdin/stdout trace protocol.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import mqtt, { type MqttClient } from "mqtt";
import { startEmbeddedBroker, type EmbeddedBroker } from "../host/broker/embedded.js";
import { adminRequest } from "../host/control/admin.js";
import { openLmdbStore } from "../host/store/lmdb.js";
import { IMAGE_FILE } from "../host/control/dp-image.js";
import { udpFrame, hex } from "./support/encoder.js";
import { requireRootAnd } from "./support/tools.js";
import { tmpNetns, capture, injectFrames } from "./support/io-net.js";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..");
const NVE = "nve-a";
const REMOTE_MAC = "02:00:5e:00:00:99";
const PORT_OF: Record<string, string> = { "hv-1": "eth2", "hv-2": "eth3" };
const OTHER: Record<string, string> = { "hv-1": "hv-2", "hv-2": "hv-1" };

function config(holdMs: number) {
  return {
    nve: NVE,
    underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe", udpPort: 4789 },
    ports: [{ name: "eth2", hypervisors: ["hv-1"] }, { name: "eth3", hypervisors: ["hv-2"] }],
    vns: [{ id: 100, alias: "blue", vni: 5000,
      profile: { encap: "vxlan", service: "l2", mtu: 1500, portSecurity: true, arpSuppress: true, learn: "explicit" } }],
    vnics: [],
    remotes: [{ nve: "nve-b", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: REMOTE_MAC, ips: ["10.0.0.99"] }] }],
    timers: { holdMs, agentHoldMs: 0, tagQuarantineMs: 5000 },
  };
}

const NVE_CHILD = `
import { createInterface } from "node:readline";
import { loadConfig } from ${JSON.stringify(join(DIST, "host/config/load.js"))};
import { openLmdbStore } from ${JSON.stringify(join(DIST, "host/store/lmdb.js"))};
import { DataPlane } from ${JSON.stringify(join(DIST, "host/dataplane/dataplane.js"))};
import { NveService } from ${JSON.stringify(join(DIST, "host/control/service.js"))};
const [cfgFile, dir, url] = process.argv.slice(1);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const config = loadConfig(cfgFile);
const store = await openLmdbStore(dir);
const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12 });
let applies = 0;
createInterface({ input: process.stdin }).on("line", (l) => {
  const q = JSON.parse(l);
  const r = dp.trace(q.port, Buffer.from(q.frame, "hex"));
  out({ id: q.id, drop: r.drop ?? null, outputs: r.outputs.map((o) => o.port) });
});
const svc = await NveService.start({
  config, store, broker: { url, reconnectPeriodMs: 100 },
  programmer: { apply: async (ops) => { dp.apply(ops); out(applies++ === 0 ? { programmed: true } : { apply: ops.length }); } },
  log: (l) => process.stderr.write(l + "\\n"),
});
out({ connected: true, bootId: svc.core.settings.bootId });
`;

class NveProcess {
  private lines = new Map<string, (v: Record<string, unknown>) => void>();
  private waiters: { key: string; resolve: (v: Record<string, unknown>) => void }[] = [];
  private seq = 0;
  stderr = "";
  readonly events: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (l) => {
      const m = JSON.parse(l) as Record<string, unknown>;
      if (typeof m.id === "string" && this.lines.has(m.id)) {
        this.lines.get(m.id)!(m);
        this.lines.delete(m.id);
        return;
      }
      this.events.push(m);
      this.waiters = this.waiters.filter((w) => (m[w.key] ? (w.resolve(m), false) : true));
    });
    child.stderr!.on("data", (d) => { this.stderr = (this.stderr + d).slice(-20000); });
    this.exited = new Promise((r) => child.once("exit", (c) => r(c)));
  }
  static start(cfgFile: string, dir: string, url: string): NveProcess {
    const child = spawn(process.execPath, ["--input-type=module", "-e", NVE_CHILD, cfgFile, dir, url], { stdio: ["pipe", "pipe", "pipe"] });
    return new NveProcess(child);
  }
  /** Resolves with the first stdout event that has `key` (e.g. "programmed", "connected"). */
  waitFor(key: string, ms = 15_000): Promise<Record<string, unknown>> {
    const seen = this.events.find((m) => m[key]);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`NVE: no "${key}" within ${ms} ms; stderr:\n${this.stderr}`)), ms);
      this.waiters.push({ key, resolve: (v) => { clearTimeout(t); resolve(v); } });
      void this.exited.then((c) => { clearTimeout(t); reject(new Error(`NVE exited (${c}) before "${key}"; stderr:\n${this.stderr}`)); });
    });
  }
  trace(port: string, frame: Uint8Array): Promise<{ drop: string | null; outputs: string[] }> {
    const id = `t${this.seq++}`;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`NVE: no trace answer in 5 s (exit ${this.child.exitCode}); stderr:\n${this.stderr}`)), 5000);
      this.lines.set(id, (m) => { clearTimeout(t); resolve({ drop: m.drop as string | null, outputs: m.outputs as string[] }); });
      this.child.stdin!.write(JSON.stringify({ id, port, frame: hex(frame) }) + "\n");
    });
  }
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/**
 * The NVE as operators run it: `nvedge run --config FILE --io none --store DIR
 * --broker URL`; its data plane is traced through the admin socket's `trace`.
 */
class CliNve {
  stderr = "";
  readonly exited: Promise<number | null>;
  private constructor(readonly child: ChildProcess, readonly admin: string) {
    child.stderr!.on("data", (d) => { this.stderr = (this.stderr + d).slice(-20000); });
    this.exited = new Promise((r) => child.once("exit", (c) => r(c)));
  }
  /** Resolves once stderr matches `re` (bounded), with the match. */
  async waitLog(re: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
    const until = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.stderr);
      if (m) return m;
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`nvedge run exited before ${re}; stderr:\n${this.stderr}`);
      if (Date.now() > until) throw new Error(`nvedge run: no ${re} in ${ms} ms; stderr:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  /** netns: `--io afpacket` inside that namespace (its interfaces carry the configuration's names). */
  static start(cfgFile: string, dir: string, url: string, admin: string, netns?: string): CliNve {
    const args = [join(DIST, "..", "bin", "nvedge.js"), "run", "--config", cfgFile, "--io", netns ? "afpacket" : "none", "--store", dir,
      "--broker", url, "--admin-socket", admin];
    const child = netns ? spawn("ip", ["netns", "exec", netns, process.execPath, ...args], { stdio: ["ignore", "ignore", "pipe"] })
      : spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    return new CliNve(child, admin);
  }
  /** Ready = restored, connected and serving its admin socket. */
  async waitReady(ms = 30_000): Promise<void> {
    const until = Date.now() + ms;
    let dead = false;
    void this.exited.then(() => { dead = true; });
    for (;;) {
      if (dead) throw new Error(`nvedge run exited (${this.child.exitCode}); stderr:\n${this.stderr}`);
      try {
        await adminRequest(this.admin, { cmd: "show", what: "ports" }, 2000);
        return;
      } catch {
        if (Date.now() > until) throw new Error(`nvedge run: admin socket not ready in ${ms} ms; stderr:\n${this.stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
  async trace(port: string, frame: Uint8Array): Promise<{ drop: string | null; outputs: string[] }> {
    const r = await adminRequest(this.admin, { cmd: "trace", port, frame: hex(frame) }) as { drop: string | null; outputs: { port: string }[] };
    return { drop: r.drop, outputs: r.outputs.map((o) => o.port) };
  }
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/**
 * SIGKILLs `nve` while a file named `name` exists in `dir` (being written):
 * a Python watcher blocked on inotify (IN_CREATE), started now, acts once
 * armed (the returned function: then at once if the file is there, else the
 * moment it is created), from its own wake-up and at a real-time priority
 * when it may (root), so the kill lands while the file is being written.
 * Bounded: 60 s after arming; fails when no such file was seen.
 */
async function killWhileExists(nve: CliNve, dir: string, name: string): Promise<() => Promise<void>> {
  const py = [
    "import ctypes, os, select, signal, struct, sys, time",
    "dir, name, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])",
    "try: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))",
    "except OSError: pass",
    "libc = ctypes.CDLL(None, use_errno=True)",
    "fd = libc.inotify_init1(os.O_CLOEXEC)",
    "if fd < 0 or libc.inotify_add_watch(fd, dir.encode(), 0x100) < 0: sys.exit('inotify: ' + os.strerror(ctypes.get_errno()))",
    "print('ready', flush=True)",
    "def kill():",
    "  os.kill(pid, signal.SIGKILL); print('killed', flush=True); sys.exit(0)",
    "armed, end = False, time.time() + 600",
    "while time.time() < end:",
    "  r = select.select([fd, 0], [], [], max(0, end - time.time()))[0]",
    "  if not r: break",
    "  if 0 in r and not armed:",
    "    if not os.read(0, 64): sys.exit('stdin closed')",
    "    armed, end = True, time.time() + 60",
    "    if os.path.exists(os.path.join(dir, name)): kill()",
    "  if fd in r:",
    "    buf = os.read(fd, 65536); i = 0",
    "    while i < len(buf):",
    "      n = struct.unpack_from('iIII', buf, i)[3]",
    "      if armed and buf[i + 16:i + 16 + n].rstrip(b'\\0') == name.encode(): kill()",
    "      i += 16 + n",
    "print('timeout', flush=True); sys.exit(1)",
  ].join("\n");
  const w = spawn("python3", ["-c", py, dir, name, String(nve.child.pid)], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "", err = "";
  w.stderr!.on("data", (d) => { err += d; });
  const exit = new Promise<number | null>((r) => w.once("exit", r));
  // its watch in place before anything that may write the file (bounded: 30 s)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the inotify watcher did not start within 30 s: ${err}`)), 30_000);
    w.stdout!.on("data", (d) => { out += d; if (/ready/.test(out)) { clearTimeout(timer); resolve(); } });
    void exit.then((c) => { clearTimeout(timer); reject(new Error(`the inotify watcher exited ${c}: ${err}`)); });
  });
  return async () => {
    w.stdin!.write("arm\n");
    const code = await exit;
    if (!/killed/.test(out)) {
      await nve.kill();
      assert.unreachable(`no ${name} in ${dir} within 60 s (watcher: ${out.trim()} ${err.trim()} exit ${code}); stderr:\n${nve.stderr}`);
    }
    await nve.exited;
  };
}

/** A hypervisor's raw protocol client (PROTOCOL.md §1/§2): requests with ids, responses by id. */
class HvClient {
  private pending = new Map<string, (r: Record<string, unknown>) => void>();
  private n = 0;
  private constructor(readonly hv: string, readonly client: MqttClient) {
    client.on("message", (_t, p) => {
      const r = JSON.parse(p.toString()) as Record<string, unknown>;
      const f = this.pending.get(r.id as string);
      if (f) { this.pending.delete(r.id as string); f(r); }
    });
  }
  static async connect(url: string, hv: string): Promise<HvClient> {
    const c = await mqtt.connectAsync(url, { username: hv, clientId: `${hv}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 100, protocolVersion: 4 });
    await c.subscribeAsync(`nvo3/v1/hv/${hv}/rsp`, { qos: 1 });
    return new HvClient(hv, c);
  }
  /** Sends a request; resolves with the response, or never (the caller races it against the kill). */
  send(op: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = `${this.hv}-${this.n++}`;
    const p = new Promise<Record<string, unknown>>((r) => this.pending.set(id, r));
    this.client.publish(`nvo3/v1/nve/${NVE}/req/${this.hv}`, JSON.stringify({ id, op, ...body }), { qos: 1 });
    return p;
  }
  async request(op: string, body: Record<string, unknown> = {}, ms = 10_000): Promise<Record<string, unknown>> {
    let t: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.send(op, body), new Promise<never>((_, rej) => { t = setTimeout(() => rej(new Error(`${this.hv}: no answer to ${op} in ${ms} ms`)), ms); })]);
    clearTimeout(t);
    return r;
  }
  forget(): void { this.pending.clear(); }
  close(): Promise<void> { return this.client.endAsync(true); }
}

// ---------------------------------------------------------------- the VNICs and their expected state

interface Vnic { id: string; mac: string; ip: string }
const vnics: Vnic[] = Array.from({ length: 12 }, (_, i) => ({
  id: `0d6c8a8e-2f5b-4a8e-8d2e-${(0x5f1a4f0e9b00 + i).toString(16)}`,
  mac: `02:00:5e:01:00:${(0x10 + i).toString(16)}`,
  ip: `10.0.1.${10 + i}`,
}));
/** Init (undefined), or owned by an End Device: Activated, or Associated and held (migration departure). */
type State = { hv: string; state: "active" | "associated"; held: boolean } | undefined;
const same = (a: State, b: State) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const addrsOf = (v: Vnic) => [{ mac: v.mac, ips: [v.ip] }];

/** What the NVE says about every VNIC (the show op from both End Devices). */
async function observe(c: Record<string, HvClient>): Promise<{ states: Map<string, State>; tags: Record<string, number | undefined> }> {
  const states = new Map<string, State>();
  const tags: Record<string, number | undefined> = {};
  for (const hv of ["hv-1", "hv-2"]) {
    const r = await c[hv].request("show");
    assert.ok(r.ok, `show from ${hv}: ${JSON.stringify(r)}`);
    for (const x of r.vnics as { vnic: string; state: "active" | "associated"; holdUntil?: number; vns: { vn: { id: number }; tag: number; addrs: unknown }[] }[]) {
      assert.not.ok(states.has(x.vnic), `${x.vnic} shown to both End Devices`);
      const v = vnics.find((y) => y.id === x.vnic);
      assert.ok(v, `show lists an unknown VNIC ${x.vnic}`);
      assert.is(x.vns.length, 1);
      assert.equal(x.vns[0].addrs, addrsOf(v!), `addresses of ${x.vnic}`);
      tags[PORT_OF[hv]] = x.vns[0].tag;
      states.set(x.vnic, { hv, state: x.state, held: x.holdUntil !== undefined });
    }
  }
  return { states, tags };
}

/** A frame from the VNIC's MAC/IP to the remote binding, on `port` with its VN tag. */
const probe = (v: Vnic, tag: number) => udpFrame({ dst: REMOTE_MAC, src: v.mac, tag: { vid: tag }, srcIp: v.ip, dstIp: "10.0.0.99" });

/** The data plane agrees with `st`: an active VNIC's frames are encapsulated from its port only; a held one's are dropped as inactive. */
async function checkDataPlane(nve: { trace: NveProcess["trace"] }, v: Vnic, st: State, tags: Record<string, number | undefined>): Promise<void> {
  for (const [hv, port] of Object.entries(PORT_OF)) {
    const tag = tags[port];
    if (tag === undefined) continue;
    const r = await nve.trace(port, probe(v, tag));
    const here = st?.hv === hv;
    if (here && st!.state === "active") assert.equal(r, { drop: null, outputs: ["eth1"] }, `${v.id} active on ${port}`);
    else if (here) assert.equal(r, { drop: "vnic-inactive", outputs: [] }, `${v.id} held on ${port}`);
    else if (st?.state === "associated") {
      // Held on the other port: the data plane may report the MAC as inactive or as not this port's.
      assert.equal(r.outputs, [], `${v.id} held on the other port, sent from ${port}`);
      assert.ok(r.drop === "spoofed-mac" || r.drop === "vnic-inactive", `${v.id} held elsewhere, from ${port}: ${r.drop}`);
    } else assert.equal(r, { drop: "spoofed-mac", outputs: [] }, `${v.id} not on ${port}: ${JSON.stringify(st)}`);
  }
}

function writeConfig(dir: string, holdMs: number): string {
  const f = join(dir, "nve.json");
  writeFileSync(f, JSON.stringify(config(holdMs)));
  return f;
}

// ---------------------------------------------------------------- crash

const crash = suite("crash: SIGKILL under load, state = acknowledged requests");

crash("20+ SIGKILLs at random moments under attach/detach/migrate: show and the data plane match the acknowledged requests", async () => {
  const work = mkdtempSync(join(tmpdir(), "nvedge-crash-"));
  const storeDir = join(work, "store");
  const cfg = writeConfig(work, 600_000);
  let broker: EmbeddedBroker | undefined;
  let nve: CliNve | undefined;
  const clients: Record<string, HvClient> = {};
  const deadline = Date.now() + 150_000; // bounded: the loop stops early rather than run on
  // The kill moments and the ops come from this seed: printed, so a failure can be replayed (CRASH_SEED=N).
  const seedIn = Number(process.env.CRASH_SEED ?? Date.now() & 0xffff);
  console.log(`  crash: CRASH_SEED=${seedIn}`);
  let seed = 0x9e3779b9 ^ seedIn;
  const rnd = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
  const expected = new Map<string, State>();
  const portTags: Record<string, number> = {};
  let acked = 0, unanswered = 0, applied = 0, kills = 0;
  try {
    broker = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves: [NVE] });
    for (const hv of ["hv-1", "hv-2"]) clients[hv] = await HvClient.connect(broker.url, hv);
    for (let cycle = 0; ; cycle++) {
      nve = CliNve.start(cfg, storeDir, broker.url, join(work, "admin.sock"));
      await nve.waitReady();
      for (const hv of ["hv-1", "hv-2"]) {
        const h = await clients[hv].request("hello", { agent: "crash-test", capabilities: [] });
        assert.ok(h.ok, JSON.stringify(h));
      }
      // After a restart: exactly the acknowledged state (uncertain VNICs resolved first, all-or-nothing).
      const seen = await observe(clients);
      for (const v of vnics) {
        const e = expected.get(v.id);
        const o = seen.states.get(v.id);
        if (e && "uncertain" in (e as object)) {
          const u = e as unknown as { uncertain: [State, State] };
          assert.ok(same(o, u.uncertain[0]) || same(o, u.uncertain[1]),
            `CRASH_SEED=${seedIn} cycle ${cycle}: ${v.id} is ${JSON.stringify(o)}, neither before ${JSON.stringify(u.uncertain[0])} nor after ${JSON.stringify(u.uncertain[1])}`);
          if (same(o, u.uncertain[1]) && !same(u.uncertain[0], u.uncertain[1])) applied++;
          expected.set(v.id, o);
        } else assert.equal(o ?? null, e ?? null, `CRASH_SEED=${seedIn} cycle ${cycle}: ${v.id} after restart`);
      }
      // Tags never change across a restart (the anchors keep both VAPs connected).
      for (const [port, tag] of Object.entries(portTags)) assert.is(seen.tags[port], tag, `cycle ${cycle}: tag of ${port}`);
      for (const v of vnics) await checkDataPlane(nve, v, expected.get(v.id), seen.tags);
      if (cycle === 0) {
        // Anchors: VNIC 0 on hv-1, VNIC 1 on hv-2, never touched again.
        for (const [i, hv] of [[0, "hv-1"], [1, "hv-2"]] as const) {
          const r = await clients[hv].request("vnic.attach", { vnic: vnics[i].id, vn: { id: 100 }, addrs: addrsOf(vnics[i]) });
          assert.ok(r.ok, JSON.stringify(r));
          portTags[PORT_OF[hv]] = r.tag as number;
          expected.set(vnics[i].id, { hv, state: "active", held: false });
        }
      }
      // Every restart so far was verified; stop after 20 kills, or at the time bound.
      if (kills >= 20 || Date.now() > deadline) {
        await nve.kill();
        break;
      }
      // Load: up to 4 outstanding requests on distinct VNICs, until a random kill moment.
      const busy = new Map<string, { before: State; after: State; done: boolean }>();
      const killAt = Date.now() + 150 + rnd() * 600;
      const inflight: Promise<void>[] = [];
      let stop = false;
      const worker = async () => {
        while (!stop && Date.now() < killAt) {
          const free = vnics.slice(2).filter((v) => !busy.has(v.id));
          const v = free[Math.floor(rnd() * free.length)];
          const before = expected.get(v.id);
          let hv: string, op: string, body: Record<string, unknown>, after: State;
          if (!before) {
            hv = rnd() < 0.5 ? "hv-1" : "hv-2";
            op = "vnic.attach"; body = { vnic: v.id, vn: { id: 100 }, addrs: addrsOf(v) };
            after = { hv, state: "active", held: false };
          } else if (before.held) {
            hv = OTHER[before.hv];
            op = "vnic.activate"; body = { vnic: v.id, migration: true };
            after = { hv, state: "active", held: false };
          } else if (rnd() < 0.5) {
            hv = before.hv; op = "vnic.deactivate"; body = { vnic: v.id, reason: "shutdown" }; after = undefined;
          } else {
            hv = before.hv; op = "vnic.deactivate"; body = { vnic: v.id, reason: "migration" };
            after = { hv, state: "associated", held: true };
          }
          const b = { before, after, done: false };
          busy.set(v.id, b);
          const r = await Promise.race([clients[hv].send(op, body), nve!.exited.then(() => undefined)]);
          if (!r) return; // killed while outstanding: uncertain
          assert.ok(r.ok, `${op} ${v.id} from ${hv}: ${JSON.stringify(r)}`);
          if (op === "vnic.attach") assert.is(r.tag, portTags[PORT_OF[hv]], "attach answers the port's tag");
          expected.set(v.id, after);
          b.done = true;
          busy.delete(v.id);
          acked++;
        }
      };
      for (let w = 0; w < 4; w++) inflight.push(worker());
      await new Promise((r) => setTimeout(r, Math.max(0, killAt - Date.now())));
      stop = true;
      await nve.kill();
      kills++;
      await Promise.all(inflight);
      for (const c of Object.values(clients)) c.forget();
      for (const [id, b] of busy) {
        if (b.done) continue;
        unanswered++;
        expected.set(id, { uncertain: [b.before, b.after] } as never);
      }
      nve = undefined;
    }
    assert.ok(kills >= 20, `only ${kills} kills within the time bound`);
    assert.ok(acked > kills * 3, `too few acknowledged requests (${acked}) for a steady stream`);
    console.log(`  crash: ${kills} SIGKILLs, ${acked} acknowledged requests, ${unanswered} unanswered at the kill (${applied} of them found applied)`);
  } finally {
    await nve?.kill();
    for (const c of Object.values(clients)) await c.close().catch(() => {});
    await broker?.close();
    rmSync(work, { recursive: true, force: true });
  }
});

crash.run();

// ---------------------------------------------------------------- restart

const restart = suite("restart: forwarding resumes from the store before the broker, timers resume");

restart("with bindings in place a restarted NVE forwards before it reaches a broker; tags kept; expired hold fires, unexpired keeps its deadline", async () => {
  const work = mkdtempSync(join(tmpdir(), "nvedge-restart-"));
  const storeDir = join(work, "store");
  const HOLD = 8000; // long enough for a restart on a loaded machine to happen before D expires
  const cfg = writeConfig(work, HOLD);
  let broker: EmbeddedBroker | undefined;
  let nve: NveProcess | undefined;
  const clients: Record<string, HvClient> = {};
  const [a, b, c, d] = vnics;
  try {
    broker = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves: [NVE] });
    const port = broker.port;
    nve = NveProcess.start(cfg, storeDir, broker.url);
    await nve.waitFor("connected");
    for (const hv of ["hv-1", "hv-2"]) clients[hv] = await HvClient.connect(broker.url, hv);
    for (const hv of ["hv-1", "hv-2"]) assert.ok((await clients[hv].request("hello", { agent: "crash-test" })).ok); // first on every session (PROTOCOL.md §2)
    const attach = async (hv: string, v: Vnic) => {
      const r = await clients[hv].request("vnic.attach", { vnic: v.id, vn: { id: 100 }, addrs: addrsOf(v) });
      assert.ok(r.ok, JSON.stringify(r));
      return r.tag as number;
    };
    const tag2 = await attach("hv-1", a);
    const tag3 = await attach("hv-2", b);
    await attach("hv-1", c);
    await attach("hv-2", d);
    // Hairpin between the two VMs (different ports): A → B leaves eth3 re-tagged.
    const aToB = udpFrame({ dst: b.mac, src: a.mac, tag: { vid: tag2 }, srcIp: a.ip, dstIp: b.ip });
    assert.equal(await nve.trace("eth2", aToB), { drop: null, outputs: ["eth3"] });
    // C departs by migration now: its hold will have expired by the restart.
    assert.ok((await clients["hv-1"].request("vnic.deactivate", { vnic: c.id, reason: "migration" })).ok);
    const cHeld = Date.now();
    await new Promise((r) => setTimeout(r, HOLD + 300 - (Date.now() - cHeld)));
    // D departs just before the crash: its hold is still running at the restart.
    const dRsp = await clients["hv-2"].request("vnic.deactivate", { vnic: d.id, reason: "migration" });
    assert.ok(dRsp.ok);
    const dHeld = Date.now();
    await nve.kill(); // SIGKILL: no shutdown path runs
    await broker.close();
    broker = undefined;

    // No broker at all: the NVE must still program the data plane and forward.
    nve = NveProcess.start(cfg, storeDir, `mqtt://127.0.0.1:${port}`);
    await nve.waitFor("programmed");
    // the expired hold fires on its own (timer armed at start): wait for its purge to reach the data plane (bounded)
    const purged = Date.now() + 5000;
    while ((await nve.trace("eth2", probe(c, tag2))).drop !== "spoofed-mac" && Date.now() < purged) await new Promise((r) => setTimeout(r, 20));
    assert.not.ok(nve.events.some((m) => m.connected), "no broker was reachable");
    assert.equal(await nve.trace("eth2", aToB), { drop: null, outputs: ["eth3"] }, "A → B forwarded after the restart");
    const bToA = udpFrame({ dst: a.mac, src: b.mac, tag: { vid: tag3 }, srcIp: b.ip, dstIp: a.ip });
    assert.equal(await nve.trace("eth3", bToA), { drop: null, outputs: ["eth2"] }, "B → A forwarded after the restart");
    assert.equal(await nve.trace("eth2", probe(c, tag2)), { drop: "spoofed-mac", outputs: [] }, "C's expired hold purged it");
    assert.equal(await nve.trace("eth3", probe(d, tag3)), { drop: "vnic-inactive", outputs: [] }, "D still held (Associated)");

    // The broker comes back: show confirms tags and D's absolute deadline.
    broker = await startEmbeddedBroker({ host: "127.0.0.1", port, nves: [NVE] });
    await nve.waitFor("connected");
    for (const hv of ["hv-1", "hv-2"]) { await clients[hv].close(); clients[hv] = await HvClient.connect(broker.url, hv); }
    for (const hv of ["hv-1", "hv-2"]) assert.ok((await clients[hv].request("hello", { agent: "crash-test" })).ok); // a new NVE process: a new session
    const s1 = await clients["hv-1"].request("show");
    const s2 = await clients["hv-2"].request("show");
    const v1 = s1.vnics as { vnic: string; vns: { tag: number }[] }[];
    const v2 = s2.vnics as { vnic: string; state: string; holdUntil?: number; vns: { tag: number }[] }[];
    assert.equal(v1.map((x) => x.vnic), [a.id], "C is gone");
    assert.is(v1[0].vns[0].tag, tag2, "tags never change across a restart");
    assert.equal(v2.map((x) => x.vnic).sort(), [b.id, d.id].sort());
    const dv = v2.find((x) => x.vnic === d.id)!;
    assert.is(dv.state, "associated");
    assert.ok(dv.holdUntil! >= dHeld - 1000 + HOLD && dv.holdUntil! <= dHeld + HOLD, `D's deadline kept: ${dv.holdUntil} vs ${dHeld + HOLD}`);
    assert.is(v2[0].vns[0].tag, tag3);
    // D's remaining time runs out after the restart: purged then, not before.
    await new Promise((r) => setTimeout(r, Math.max(0, dv.holdUntil! + 300 - Date.now())));
    assert.equal(await nve.trace("eth3", probe(d, tag3)), { drop: "spoofed-mac", outputs: [] }, "D purged when its hold ran out");
    const s3 = await clients["hv-2"].request("show");
    assert.equal((s3.vnics as { vnic: string }[]).map((x) => x.vnic), [b.id]);
    // The new bootId makes agents sync (PROTOCOL.md §3): a sync equal to the store changes nothing.
    const applied = nve.events.filter((m) => m.apply).length;
    const sy = await clients["hv-1"].request("sync", { syncId: randomUUID(), final: true,
      vnics: [{ vnic: a.id, state: "active", vns: [{ vn: { id: 100 }, tag: tag2, addrs: addrsOf(a) }] }] });
    assert.ok(sy.ok, JSON.stringify(sy));
    assert.equal((sy.tags as { tag: number }[]).map((t) => t.tag), [tag2], "no tag change");
    // the child prints {apply} before the change is answered; a trace answered on the same pipe comes after it
    await nve.trace("eth2", aToB);
    assert.is(nve.events.filter((m) => m.apply).length, applied, "no data plane rewrite");
  } finally {
    await nve?.kill();
    for (const x of Object.values(clients)) await x.close().catch(() => {});
    await broker?.close();
    rmSync(work, { recursive: true, force: true });
  }
});

restart.run();

// ---------------------------------------------------------------- the table image (issue 15)

const image = suite("image: SIGKILL while the table image is written or restored");

image("a start uses a whole image of the store's last transaction or rebuilds; never a torn or stale one; no binding lost", async () => {
  const work = mkdtempSync(join(tmpdir(), "nvedge-crash-image-"));
  const storeDir = join(work, "store");
  const imgFile = join(storeDir, IMAGE_FILE);
  const cfg = writeConfig(work, 600_000);
  let broker: EmbeddedBroker | undefined;
  let nve: CliNve | undefined;
  const clients: Record<string, HvClient> = {};
  const seedIn = Number(process.env.CRASH_SEED ?? Date.now() & 0xffff);
  console.log(`  image: CRASH_SEED=${seedIn}`);
  let seed = 0x85ebca6b ^ seedIn;
  const rnd = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
  // Bindings stored before the first start, so the tables (and their image) are not trivial.
  const FILLED = 4000, TAG = 100; // under limits.maxVnicsPerHv (4096) with the test's own
  const filled = (i: number): Vnic => ({ id: `0d6c8a8e-2f5b-4a8e-8d2e-${(0x6e0000000000 + i).toString(16)}`,
    mac: `02:00:5f:${((i >> 16) & 255).toString(16).padStart(2, "0")}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
    ip: `10.1.${(i >> 8) & 255}.${i & 255}` });
  const expected = new Map<string, State>();
  const starts: string[] = [];
  try {
    const st = await openLmdbStore(storeDir);
    await st.transaction((tx) => {
      tx.put("vaps", "eth2|100", { port: "eth2", vn: 100, tag: TAG });
      for (let i = 0; i < FILLED; i++) {
        const v = filled(i);
        tx.put("vnics", v.id, { vnic: v.id, hv: "hv-1", port: "eth2", state: "active", vns: [{ vn: 100, addrs: addrsOf(v) }] });
      }
    });
    await st.close();
    broker = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves: [NVE] });
    for (const hv of ["hv-1", "hv-2"]) clients[hv] = await HvClient.connect(broker.url, hv);
    const tags = { eth2: TAG, eth3: undefined as number | undefined };

    /** Starts the NVE; once it answers, checks how it started and that its data plane holds exactly the acknowledged state. */
    let readyMs = 1000;
    const startAndCheck = async (must: "image" | "rebuild" | "either", why: string) => {
      const t0 = Date.now();
      nve = CliNve.start(cfg, storeDir, broker!.url, join(work, "admin.sock"));
      const m = await nve.waitLog(/forwarding: the tables (from the image|rebuilt)/);
      readyMs = Date.now() - t0;
      const how = m[1] === "from the image" ? "image" : "rebuild";
      starts.push(how);
      if (must !== "either") assert.is(how, must, `CRASH_SEED=${seedIn}: ${why}: started by ${how}; stderr:\n${nve.stderr}`);
      await nve.waitReady();
      for (const hv of ["hv-1", "hv-2"]) assert.ok((await clients[hv].request("hello", { agent: "crash-image" })).ok);
      for (const i of [0, 1, Math.floor(rnd() * FILLED), FILLED - 1])
        assert.equal(await nve.trace("eth2", probe(filled(i), TAG)), { drop: null, outputs: ["eth1"] }, `${why}: stored VNIC ${i} forwards`);
      for (const v of vnics.slice(0, 4)) await checkDataPlane(nve, v, expected.get(v.id), tags);
      return how;
    };
    const change = async (v: Vnic, hv: string, attach: boolean) => {
      const r = await clients[hv].request(attach ? "vnic.attach" : "vnic.deactivate", attach
        ? { vnic: v.id, vn: { id: 100 }, addrs: addrsOf(v) } : { vnic: v.id, reason: "shutdown" });
      assert.ok(r.ok, JSON.stringify(r));
      if (attach && hv === "hv-2") tags.eth3 = r.tag as number;
      expected.set(v.id, attach ? { hv, state: "active", held: false } : undefined);
    };
    /** Makes the changes, then SIGKILLs the NVE while the image that follows them is written. */
    const killWhenWriting = async (changes: () => Promise<void>) => {
      // the image is written through IMAGE_FILE.tmp: killed while that exists, by a watcher process
      // blocked on inotify, watching before the changes and armed once they are answered (this
      // process's timers, 2 ms apart, missed the write of a small image under load: it can be open
      // for less time than this event loop's delays)
      const killNow = await killWhileExists(nve!, storeDir, `${IMAGE_FILE}.tmp`);
      await changes();
      await killNow();
      assert.ok(existsSync(`${imgFile}.tmp`), `the kill came during the image's write (its temporary file is left); stderr:\n${nve!.stderr}`);
    };

    // 1. A fresh store: rebuilt; killed while its first image is written (a torn temporary file).
    await startAndCheck("rebuild", "no image yet");
    await killWhenWriting(async () => {
      await change(vnics[0], "hv-1", true);
      await change(vnics[1], "hv-2", true);
    });
    // 2. The torn file is never used: rebuilt. Then a whole image is written, and acknowledged
    //    changes follow it before the kill: that image is stale.
    await startAndCheck("rebuild", "after a kill during the first image's write");
    await nve!.waitLog(/image: written/);
    await change(vnics[2], "hv-1", true);
    await change(vnics[0], "hv-1", false); // detached: a stale image would still forward it
    await nve!.kill();
    // 3. The stale image is refused (the store moved on) and the tables rebuilt with the changes.
    await startAndCheck("rebuild", "after changes that followed the image");
    assert.match(nve!.stderr, /image: .* refused \(the store's last transaction id differs/);
    await nve!.waitLog(/image: written/);
    await nve!.kill();
    // 4. The image of the store's last transaction is used; then kills at random moments of
    //    restarts from it, and during later writes after changes.
    await startAndCheck("image", "an image of the store's last transaction");
    for (let k = 0; k < 6; k++) {
      if (k % 2 === 0) {
        // killed during the restart itself: while the image is read, the model loaded or the tables checked
        await nve!.kill();
        nve = CliNve.start(cfg, storeDir, broker.url, join(work, "admin.sock"));
        await new Promise((r) => setTimeout(r, rnd() * readyMs * 1.2));
        await nve.kill();
        await startAndCheck("either", `after a kill during restart ${k}`);
      } else {
        await killWhenWriting(() => change(vnics[3], "hv-2", expected.get(vnics[3].id) === undefined));
        await startAndCheck("either", `after a kill during write ${k}`);
      }
    }
    await nve!.kill();
    console.log(`  image: starts ${starts.join(", ")}`);
    assert.ok(starts.filter((s) => s === "image").length >= 1, "some starts used the image");
  } finally {
    await nve?.kill();
    for (const c of Object.values(clients)) await c.close().catch(() => {});
    await broker?.close();
    rmSync(work, { recursive: true, force: true });
  }
});

if (requireRootAnd(["ip"], "the crash test's packet I/O image case (a network namespace, AF_PACKET)")) {
  image("with packet I/O: images are written while forwarding, and a start after a SIGKILL forwards from the last one, killed during restarts too", async () => {
    const work = mkdtempSync(join(tmpdir(), "nvedge-crash-image-io-"));
    const storeDir = join(work, "store");
    const cfg = writeConfig(work, 600_000);
    const ns = tmpNetns("cri");
    let nve: CliNve | undefined;
    const seedIn = Number(process.env.CRASH_SEED ?? Date.now() & 0xffff);
    console.log(`  image (packet I/O): CRASH_SEED=${seedIn}`);
    let seed = 0x27d4eb2f ^ seedIn;
    const rnd = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
    const FILLED = 3000, TAG = 100;
    const filled = (i: number): Vnic => ({ id: `0d6c8a8e-2f5b-4a8e-8d2e-${(0x6f0000000000 + i).toString(16)}`,
      mac: `02:00:6e:${((i >> 16) & 255).toString(16).padStart(2, "0")}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
      ip: `10.2.${(i >> 8) & 255}.${i & 255}` });
    try {
      // the configuration's interfaces in the namespace: eth1 (underlay), eth2, eth3 (trunks); their peers
      const peer: Record<string, string> = {};
      for (const name of ["eth1", "eth2", "eth3"]) {
        const [p, end] = ns.veth(name.slice(-1));
        for (const a of [["link", "set", end, "down"], ["link", "set", end, "name", name], ["link", "set", name, "up"]]) ns.run("ip", a);
        peer[name] = p;
      }
      const st = await openLmdbStore(storeDir);
      await st.transaction((tx) => {
        tx.put("vaps", "eth2|100", { port: "eth2", vn: 100, tag: TAG });
        for (let i = 0; i < FILLED; i++) {
          const v = filled(i);
          tx.put("vnics", v.id, { vnic: v.id, hv: "hv-1", port: "eth2", state: "active", vns: [{ vn: 100, addrs: addrsOf(v) }] });
        }
      });
      await st.close();
      // no broker (port 1 refuses): the NVE forwards from its store and its image meanwhile
      const start = () => CliNve.start(cfg, storeDir, "mqtt://127.0.0.1:1", join(work, "admin.sock"), ns.name);
      // real frames: a stored VNIC's frame into the trunk leaves the underlay VXLAN-encapsulated
      const check = async (why: string) => {
        const is = [0, Math.floor(rnd() * FILLED), FILLED - 1];
        const cap = await capture(ns, peer.eth1, is.length, 20_000, ["udp", "port", "4789"]);
        injectFrames(ns, peer.eth2, is.map((i) => probe(filled(i), TAG)));
        assert.is((await cap.done).length, is.length, `${why}: stored VNICs ${is.join(", ")} forward; stderr:\n${nve!.stderr}`);
      };
      // 1. No image yet: rebuilt, and the first image written while the workers forward (not at a stop).
      nve = start();
      await nve.waitLog(/forwarding: the tables rebuilt/);
      await nve.waitLog(/image: written after commits/);
      await check("rebuilt");
      // 2. SIGKILL: the next start forwards from that image.
      await nve.kill();
      nve = start();
      await nve.waitLog(/forwarding: the tables from the image/);
      await check("after a SIGKILL");
      // 3. Killed at random moments of restarts from it: each start after uses a whole image or rebuilds.
      let readyMs = 1000;
      const starts: string[] = [];
      for (let k = 0; k < 3; k++) {
        await nve.kill();
        nve = start();
        await new Promise((r) => setTimeout(r, rnd() * readyMs * 1.2));
        await nve.kill();
        const t0 = Date.now();
        nve = start();
        const m = await nve.waitLog(/forwarding: the tables (from the image|rebuilt)/);
        readyMs = Date.now() - t0;
        starts.push(m[1] === "from the image" ? "image" : "rebuild");
        await check(`after a kill during restart ${k}`);
      }
      console.log(`  image (packet I/O): starts after kills during restarts: ${starts.join(", ")}`);
    } finally {
      await nve?.kill();
      ns.remove();
      rmSync(work, { recursive: true, force: true });
    }
  });
}

image.run();
