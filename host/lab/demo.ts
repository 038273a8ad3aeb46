// `nvedge lab demo` (what `npm start` runs): the lab up, the embedded broker,
// the two NVEs (`nvedge run --io afpacket` in their namespaces), one agent per
// hypervisor (`nvedge agent run --ovs-db` in its namespace), the VMs attached
// with `--port` so the agent tags their OVS ports itself, a bounded ping between every
// interesting pair, then a live line of counters until Ctrl-C (SIGINT/SIGTERM)
// or --duration; everything is taken down at the end, whatever happened.
//
// Parts of nvedge that are not there yet are named and worked around:
// - no `nvedge run`: no NVE; the demo still shows the peers nvedge did not
//   write (Linux VXLAN <-> OVS VXLAN) talking over the underlay;
// - no `nvedge agent`: the NVEs run their static configs (nve-*.static.json:
//   the VNICs the agents would attach) and the lab sets each VM port's tag
//   with the agent's OVS driver (ovs-driver.ts), as the agent would.
import { createServer, connect, type Server } from "node:net";
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { root as checkoutRoot, addonPath } from "../paths.js";
import { labUp, labDown } from "./engine.js";
import { setPortTag } from "../agent/ovs-driver.js";
import { shAsync, sleep } from "../sys/sh.js";
import type { LabDescription, LabOptions } from "./topology.js";
import { pipeBoth } from "./relay.js";

export interface DemoOptions extends LabOptions { durationS?: number; workers?: number; keep?: boolean }

// The lab runs from a checkout (it spawns dist/ files), never from a bundle.
const root = checkoutRoot.endsWith("/") ? checkoutRoot : `${checkoutRoot}/`;
const BIN = `${root}bin/nvedge.js`;
const MQTT_PORT = 1883;

/** Which nvedge commands exist in this build (the CLI loads host/cli/<name>.js lazily). */
function available(): { run: boolean; agent: boolean; addon: boolean } {
  return {
    run: existsSync(`${root}dist/host/cli/run.js`),
    agent: existsSync(`${root}dist/host/cli/agent.js`),
    addon: existsSync(addonPath()),
  };
}

interface Proc { name: string; child: ChildProcess; exited?: number | null; log: string }

export async function runDemo(o: DemoOptions): Promise<number> {
  const say = (l: string) => console.log(l);
  let stopping = false;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((r) => (wake = r));
  const onSignal = (sig: string) => { if (!stopping) { stopping = true; say(`\n${sig}: taking the lab down`); } wake(); };
  const handlers = { SIGINT: () => onSignal("SIGINT"), SIGTERM: () => onSignal("SIGTERM") };
  process.on("SIGINT", handlers.SIGINT);
  process.on("SIGTERM", handlers.SIGTERM);

  const procs: Proc[] = [];
  let broker: { close(): Promise<void> } | undefined;
  let bridge: Server | undefined;
  let d: LabDescription | undefined;
  try {
    d = await labUp({ ...o, log: (l) => say(`  ${l}`) });
    const lab = d;
    const logDir = `${lab.stateDir}/demo`;
    mkdirSync(logDir, { recursive: true });
    say(`lab up: ${lab.descriptionFile}`);

    const spawnIn = (name: string, ns: string, argv: string[], env: NodeJS.ProcessEnv = {}): Proc => {
      const log = `${logDir}/${name}.log`;
      const out = createWriteStream(log);
      // ns "" = the root namespace (the IMA, next to the broker)
      const child = ns === "" ? spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } })
        : spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
      child.stdout!.pipe(out);
      child.stderr!.pipe(out);
      const p: Proc = { name, child, log };
      child.on("exit", (c) => { p.exited = c; });
      procs.push(p);
      return p;
    };

    // The broker, on the root namespace's loopback; a unix socket in front of
    // it; a relay in every namespace that talks MQTT (relay.ts).
    const { startEmbeddedBroker } = await import("../broker/embedded.js");
    const b = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves: lab.nves.map((n) => n.id), log: () => {} });
    broker = b;
    const sock = `${lab.stateDir}/relay-broker.sock`;
    rmSync(sock, { force: true });
    bridge = createServer((c) => pipeBoth(c, connect(b.port, "127.0.0.1")));
    await new Promise<void>((r, j) => { bridge!.once("error", j); bridge!.listen(sock, () => r()); });
    for (const ns of [...lab.nves.map((n) => n.ns), ...lab.hypervisors.map((h) => h.ns)]) {
      spawnIn(`relay-${ns}`, ns, [process.execPath, `${root}dist/host/lab/relay.js`, "127.0.0.1", String(MQTT_PORT), sock]);
    }
    const brokerUrl = `mqtt://127.0.0.1:${MQTT_PORT}`;
    say(`broker: embedded, ${b.url} (reached from each namespace as ${brokerUrl})`);

    const have = available();
    const missing: string[] = [];
    if (!have.run) missing.push("nvedge run (host/cli/run.ts)");
    if (have.run && !have.addon) missing.push("the AF_PACKET addon (node scripts/build.mjs --addon)");
    if (!have.agent) missing.push("nvedge agent (host/cli/agent.ts)");
    if (missing.length) say(`not available in this build: ${missing.join(", ")}`);
    const nveUp = have.run && have.addon;
    const dynamic = nveUp && have.agent;

    // The mapping authority (PROTOCOL.md §6, issue 6) with the agents: seeded with the
    // lab's VNs; each NVE's config gets an `ima` key so it announces its VMs and follows moves.
    const configOf = new Map(lab.nves.map((n) => [n.id, dynamic ? n.config : n.staticConfig]));
    if (dynamic && existsSync(`${root}dist/host/cli/ima.js`)) {
      const vns = (JSON.parse(readFileSync(lab.nves[0].config, "utf8")) as { vns: unknown[] }).vns;
      // PROTOCOL.md §6: the IMA serves only the NVEs it lists, each with its underlay IP.
      const nves = lab.nves.map((n) => ({ id: n.id, ip: n.underlay.ip }));
      writeFileSync(`${logDir}/ima.json`, JSON.stringify({ ima: "ima", nves, vns }));
      const ima = spawnIn("ima", "", [process.execPath, BIN, "ima", "run", "--config", `${logDir}/ima.json`, "--broker", `mqtt://127.0.0.1:${b.port}`, "--store", `${lab.stateDir}/ima-store`]);
      const deadline = Date.now() + 15_000;
      const serving = () => { try { return readFileSync(ima.log, "utf8").includes("serving PROTOCOL.md"); } catch { return false; } };
      while (!stopping && Date.now() < deadline && ima.exited === undefined && !serving()) await sleep(200);
      if (serving()) {
        for (const n of lab.nves) {
          const file = `${logDir}/${n.id}.ima.json`;
          writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(n.config, "utf8")), ima: { id: "ima" } }));
          configOf.set(n.id, file);
        }
        say(`IMA: nvedge ima run in the root namespace (log ${ima.log})`);
      } else say(`IMA: did not come up (see ${ima.log}); the NVEs run without it`);
    }
    if (nveUp) {
      for (const n of lab.nves) {
        spawnIn(n.id, n.ns, [process.execPath, BIN, "run", "--config", configOf.get(n.id)!, "--broker", brokerUrl,
          "--io", "afpacket", "--workers", String(o.workers ?? 1), "--store", `${lab.stateDir}/${n.id}-store`]);
      }
      // Bounded wait until each NVE's admin socket exists (it is up and has its store open).
      const deadline = Date.now() + 20_000;
      while (!stopping && Date.now() < deadline && !lab.nves.every((n) => existsSync(`${lab.stateDir}/${n.id}-store/nvedge.sock`))) await sleep(200);
      say(`NVEs: ${lab.nves.map((n) => `${n.id} in ${n.ns}`).join(", ")} (${dynamic ? "VNICs from the agents" : "static VNICs: " + lab.nves.map((n) => n.staticConfig).join(", ")})`);
    } else {
      say("NVEs: not started; showing the remote VTEPs nvedge did not write (Linux VXLAN <-> OVS VXLAN)");
    }

    if (dynamic) {
      const agentSock = (h: { id: string }) => `${logDir}/agent-${h.id}.sock`;
      for (const h of lab.hypervisors) {
        spawnIn(`agent-${h.id}`, h.ns, [process.execPath, BIN, "agent", "run", "--broker", brokerUrl, "--hv", h.id, "--nve", h.nve,
          "--state", `${logDir}/agent-${h.id}.json`, "--socket", agentSock(h), "--ovs-db", h.ovs.db]);
      }
      // Bounded wait until every agent's control socket answers.
      for (const h of lab.hypervisors) {
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline && !stopping) {
          if ((await shAsync([process.execPath, BIN, "agent", "show", "--socket", agentSock(h)], { allowFail: true, timeoutMs: 5000 })).code === 0) break;
          await sleep(250);
        }
      }
      for (const v of lab.vms) {
        if (stopping) break;
        const h = lab.hypervisors.find((x) => x.id === v.hv)!;
        const vn = lab.vns.find((x) => x.id === v.vn)!;
        const r = await shAsync([process.execPath, BIN, "agent", "attach", "--vnic", v.vnic, "--vn", vn.alias, "--mac", v.mac, "--ip", v.ip,
          "--port", v.ovsPort, "--json", "--socket", agentSock(h)], { allowFail: true, timeoutMs: 15_000 });
        let tag: number | undefined;
        try { tag = (JSON.parse(r.stdout) as { tag: number }).tag; } catch { /* reported below */ }
        if (r.code === 0 && tag) {
          // The agent put the tag on the VM's OVS port itself (--port, host/agent/driver.ts).
          say(`  attach ${v.name} (${v.mac} ${v.ip}, VN ${vn.alias}) on ${h.id}: tag ${tag} -> OVS port ${v.ovsPort}`);
        } else {
          say(`  attach ${v.name} on ${h.id}: FAILED: ${(r.stderr.trim() || r.stdout.trim()).split("\n").pop() ?? ""}`);
        }
      }
    } else if (nveUp) {
      for (const v of lab.vms) {
        const h = lab.hypervisors.find((x) => x.id === v.hv)!;
        const vn = lab.vns.find((x) => x.id === v.vn)!;
        await setPortTag(h.ovs.db, v.ovsPort, vn.staticTag);
      }
      say(`  VM ports tagged by the lab (the agent's OVS driver): ${lab.vns.map((v) => `${v.alias}=${v.staticTag}`).join(", ")}`);
    }

    // Give the NVEs time to come up, then fail loudly if one died.
    if (nveUp) await Promise.race([sleep(2000), stopped]);
    for (const p of procs) {
      if (p.exited !== undefined && !stopping) say(`  ${p.name} exited (${p.exited}); see ${p.log}`);
    }

    // A bounded ping between every interesting pair.
    if (!stopping) {
      const vm = (n: string) => lab.vms.find((v) => v.name === n)!;
      const k = lab.kernelVxlan, gnv = lab.ovsVtep.tunnels.find((t) => t.type === "geneve")!, vxl = lab.ovsVtep.tunnels.find((t) => t.type === "vxlan")!;
      const pairs: [string, string, string, string][] = nveUp ? [
        [vm("vm11").ns, vm("vm21").ip, "vm11 -> vm21", "VM to VM across nve-a and nve-b (VXLAN)"],
        [vm("vm11").ns, vm("vm31").ip, "vm11 -> vm31", "hairpin: two ports of nve-a"],
        [vm("vm11").ns, k.hostIp, "vm11 -> kvx", "VM behind nvedge to the Linux kernel's VXLAN device"],
        [vm("vm12").ns, gnv.hostIp, "vm12 -> ovtep-g", "VM behind nvedge to OVS over Geneve"],
        [vm("vm22").ns, vm("vm12").ip, "vm22 -> vm12", "VM to VM across the NVEs (Geneve)"],
      ] : [];
      pairs.push([k.ns, vxl.hostIp, "kvx -> ovtep-v", "Linux VXLAN to OVS VXLAN (no nvedge)"]);
      say("ping (3 echoes each once the path answers, 1 s timeout):");
      const results = await Promise.all(pairs.map(async ([ns, dst, label, what]) => {
        await warmUp(ns, dst);
        const r = await pingOnce(ns, dst);
        return `  ${label.padEnd(16)} ${r.padEnd(12)} ${what}`;
      }));
      for (const l of results) say(l);
    }

    // The live line: packets per second on every NVE port and on the peers.
    if (!stopping) {
      const start = Date.now();
      const end = o.durationS ? start + o.durationS * 1000 : Infinity;
      const load = [spawnPing(lab.vms[0].ns, nveUp ? lab.vms.find((v) => v.name === "vm21")!.ip : "", procs),
                    spawnPing(lab.kernelVxlan.ns, lab.ovsVtep.tunnels.find((t) => t.type === "vxlan")!.hostIp, procs)].filter(Boolean);
      void load;
      say(`live counters (packets/s)${o.durationS ? `, ${o.durationS} s` : ""}; Ctrl-C to stop:`);
      let prev = await snapshot(lab);
      while (!stopping && Date.now() < end) {
        await Promise.race([sleep(1000), stopped]);
        if (stopping) break;
        const now = await snapshot(lab);
        const dp = nveUp ? await dataPlaneCounters(lab) : "";
        // On a terminal one line rewritten in place; into a pipe or a file (a
        // log, CI) one line per sample, without carriage returns (issue 13).
        const sample = `[${String(Math.round((Date.now() - start) / 1000)).padStart(4)} s] ${line(lab, prev, now)}${dp}`;
        process.stdout.write(process.stdout.isTTY ? `\r${sample}   ` : `${sample}\n`);
        prev = now;
        const dead = procs.filter((p) => p.exited !== undefined && !p.name.startsWith("ping"));
        if (dead.length) { say(`${process.stdout.isTTY ? "\n" : ""}${dead.map((p) => `${p.name} exited (${p.exited}), see ${p.log}`).join("; ")}`); break; }
      }
      if (process.stdout.isTTY) process.stdout.write("\n");
    }
    return 0;
  } catch (e) {
    console.error(`nvedge lab demo: ${(e as Error).message}`);
    return 1;
  } finally {
    for (const p of procs) if (p.exited === undefined) p.child.kill("SIGTERM");
    await Promise.race([Promise.all(procs.map((p) => p.exited !== undefined ? undefined : new Promise((r) => p.child.once("exit", r)))), sleep(5000)]);
    for (const p of procs) if (p.exited === undefined) p.child.kill("SIGKILL");
    bridge?.close();
    await broker?.close().catch(() => {});
    if (d && !o.keep) {
      const r = await labDown(d);
      say(`lab down: ${r.namespaces.length} namespaces removed, ${r.killed.length} processes stopped`);
    } else if (d) {
      say(`lab kept up (--keep): nvedge lab down${d.id ? " --id " + d.id : ""} removes it`);
    }
    process.removeListener("SIGINT", handlers.SIGINT);
    process.removeListener("SIGTERM", handlers.SIGTERM);
  }
}

/**
 * One echo at a time until one is answered (at most 5): a path's first packets
 * may go to resolving neighbours, and OVS's native tunnelling drops the packet
 * that makes it resolve its tunnel next hop. The 3 echoes counted after this
 * measure the path, not its warm-up.
 */
async function warmUp(ns: string, dst: string): Promise<void> {
  for (let i = 0; i < 5; i++) {
    const child = spawn("ip", ["netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst], { stdio: "ignore" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    const code = await new Promise((r) => child.on("close", r));
    clearTimeout(timer);
    if (code === 0) return;
  }
}

async function pingOnce(ns: string, dst: string): Promise<string> {
  const child = spawn("ip", ["netns", "exec", ns, "ping", "-c", "3", "-i", "0.3", "-W", "1", dst], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (x) => (out += x));
  const timer = setTimeout(() => child.kill("SIGKILL"), 6000);
  await new Promise((r) => child.on("close", r));
  clearTimeout(timer);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  return m ? `${m[2]}/${m[1]} replies` : "no answer";
}

/** A steady, bounded background ping (killed with the demo), so the counters move. */
function spawnPing(ns: string, dst: string, procs: Proc[]): Proc | undefined {
  if (!dst) return undefined;
  const child = spawn("ip", ["netns", "exec", ns, "ping", "-q", "-i", "0.2", "-W", "1", "-w", "86400", dst], { stdio: "ignore" });
  const p: Proc = { name: `ping-${ns}`, child, log: "" };
  child.on("exit", (c) => { p.exited = c; });
  procs.push(p);
  return p;
}

type Snap = Map<string, { rx: number; tx: number }>;

/** rx/tx packet counters of every NVE port and peer underlay port, keyed "ns/dev". */
async function snapshot(d: LabDescription): Promise<Snap> {
  const out: Snap = new Map();
  const read = async (ns: string, devs: string[]) => {
    const r = await shAsync(["ip", "-n", ns, "-s", "-j", "link", "show"], { allowFail: true, timeoutMs: 5000 });
    if (r.code !== 0) return;
    for (const l of JSON.parse(r.stdout) as { ifname: string; stats64: { rx: { packets: number }; tx: { packets: number } } }[]) {
      if (devs.includes(l.ifname)) out.set(`${ns}/${l.ifname}`, { rx: l.stats64.rx.packets, tx: l.stats64.tx.packets });
    }
  };
  for (const n of d.nves) await read(n.ns, [n.underlay.iface, ...n.ports.map((p) => p.name)]);
  await read(d.kernelVxlan.ns, [d.kernelVxlan.underlay.iface]);
  return out;
}

function line(d: LabDescription, a: Snap, b: Snap): string {
  const rate = (k: string) => {
    const x = a.get(k), y = b.get(k);
    return x && y ? `${y.rx - x.rx}/${y.tx - x.tx}` : "-";
  };
  const parts = d.nves.map((n) => `${n.id}: ${n.ports.map((p) => `${p.name} ${rate(`${n.ns}/${p.name}`)}`).join(" ")} ul ${rate(`${n.ns}/${n.underlay.iface}`)}`);
  parts.push(`kvx ul ${rate(`${d.kernelVxlan.ns}/${d.kernelVxlan.underlay.iface}`)}`);
  return parts.join(" | ") + "  (rx/tx)";
}

/** The NVEs' own data-plane totals over their admin sockets (`nvedge show counters`), or "" when they do not answer. */
async function dataPlaneCounters(d: LabDescription): Promise<string> {
  let adminRequest: (path: string, msg: { cmd: string; what: string }, timeoutMs?: number) => Promise<unknown>;
  try {
    ({ adminRequest } = await import("../control/admin.js") as any);
  } catch {
    return "";
  }
  const parts: string[] = [];
  for (const n of d.nves) {
    try {
      const r = await adminRequest(`${d.stateDir}/${n.id}-store/nvedge.sock`, { cmd: "show", what: "counters" }, 1000) as any;
      const c = r.counters ?? r;
      const top = Object.entries(c.drops as Record<string, number>).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])[0];
      parts.push(`${n.id} fwd ${c.frames.forwarded} drop ${c.frames.dropped}${top ? ` (${top[0]} ${top[1]})` : ""}`);
    } catch {
      parts.push(`${n.id} -`);
    }
  }
  return ` || data plane: ${parts.join(", ")}`;
}
