// The veth lab (issue 5): `nvedge lab up` builds what lab.json says (namespaces,
// private userspace OVS per hypervisor, the Linux VXLAN and OVS Geneve/VXLAN
// peers), the agent's OVS driver makes a VM's frames leave the trunk with the
// tag it set, the peers nvedge did not write really speak VXLAN and Geneve on
// the underlay (judged by tshark), and `nvedge lab down` leaves nothing, also
// after a partial `up`. Needs root. Each run uses its own lab id and state
// directory, so a lab someone else has up is never touched.
import { test, suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { ns, capture, namespaceExists } from "./support/netns.js";
import { requireRootAnd, requireTool } from "./support/tools.js";
import { tsharkAvailable, dissectFrames, assertClean, stack } from "./support/tshark.js";
import { describeLab, labNamespaces, labOvsInstances, type LabDescription } from "../host/lab/topology.js";
import { labDown } from "../host/lab/engine.js";
import { startOvs, ovsPids, vsctl } from "../host/lab/ovs.js";
import { setPortTag, clearPortTag, getPortTag, OvsDriverError, PARKING_VLAN } from "../host/agent/ovs-driver.js";
import { loadConfig } from "../host/config/load.js";

const BIN = fileURLToPath(new URL("../../bin/nvedge.js", import.meta.url));

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Emergency cleanup, synchronous, for a process that dies between up and down. */
function hardDown(d: LabDescription): void {
  for (const o of labOvsInstances(d)) for (const p of ovsPids(o)) { try { process.kill(p, "SIGKILL"); } catch { /* gone */ } }
  for (const n of labNamespaces(d)) {
    const pids = (spawnSync("ip", ["netns", "pids", n], { encoding: "utf8" }).stdout ?? "").split(/\s+/).filter(Boolean).map(Number);
    for (const p of pids) { try { process.kill(p, "SIGKILL"); } catch { /* gone */ } }
    spawnSync("ip", ["netns", "del", n], { stdio: "ignore" });
  }
  rmSync(d.stateDir, { recursive: true, force: true });
}

const TSHARK = requireTool("tshark", tsharkAvailable, "the tshark dissection of the lab's peers' frames");
if (requireRootAnd(["ovs-vswitchd", "ovsdb-server", "ethtool", "tcpdump", "ping"], "the veth/OVS lab tests")) {
  const id = "t" + randomBytes(3).toString("hex");
  const stateDir = mkdtempSync("/tmp/nvl-lab-");
  const expected = describeLab({ id, stateDir });
  process.on("exit", () => { if (labNamespaces(expected).some(namespaceExists)) hardDown(expected); });

  const lab = suite("lab");
  let d: LabDescription;
  const vm = (name: string) => d.vms.find((v) => v.name === name)!;
  const hvOf = (name: string) => d.hypervisors.find((h) => h.id === vm(name).hv)!;
  const nveOf = (name: string) => d.nves.find((n) => n.id === hvOf(name).nve)!;

  lab.before(() => {
    const r = cli(["lab", "up", "--id", id, "--state-dir", stateDir, "--json"]);
    if (r.code !== 0) { hardDown(expected); throw new Error(`nvedge lab up failed (${r.code}): ${r.stderr}`); }
    d = JSON.parse(r.stdout) as LabDescription;
  });
  lab.after(async () => { await labDown(expected); });

  lab("lab up --json describes the lab it built: every namespace exists", () => {
    assert.equal(d, expected, "the JSON printed is the description of that lab id and state dir");
    for (const n of labNamespaces(d)) assert.ok(namespaceExists(n), `namespace ${n}`);
    assert.ok(labNamespaces(d).every((n) => n.startsWith(`nvl-${id}-`)));
    const file = JSON.parse(readFileSync(d.descriptionFile, "utf8"));
    assert.is(file.complete, true);
    assert.equal(file.lab, d);
  });

  lab("each hypervisor's OVS answers with a netdev bridge, its VM ports and the trunk", () => {
    for (const h of d.hypervisors) {
      const ports = vsctl(h.ovs, ["list-ports", h.bridge]).stdout.trim().split("\n").sort();
      assert.equal(ports, [h.trunk, ...h.vms.map((n) => vm(n).ovsPort)].sort(), `${h.id} ports`);
      assert.is(vsctl(h.ovs, ["get", "bridge", h.bridge, "datapath_type"]).stdout.trim(), "netdev");
      // Started by hand inside the hypervisor's namespace, not the root one.
      const inNs = spawnSync("ip", ["netns", "pids", h.ns], { encoding: "utf8" }).stdout.split(/\s+/).filter(Boolean).map(Number);
      for (const p of ovsPids(h.ovs)) assert.ok(inNs.includes(p), `OVS pid ${p} runs in ${h.ns}`);
    }
  });

  lab("the NVE configs written are valid configuration files naming the lab's interfaces", () => {
    for (const n of d.nves) {
      for (const [file, withVnics] of [[n.config, false], [n.staticConfig, true]] as const) {
        const c = loadConfig(file);
        assert.is(c.nve, n.id);
        assert.is(c.underlay.port, n.underlay.iface);
        // the next hop by IP, its MAC resolved by the NVE itself (issue 11): no static gatewayMac
        assert.is(c.underlay.gateway, d.underlay.routerIp);
        assert.is(c.underlay.gatewayMac, undefined);
        assert.equal(c.ports.map((p) => p.name), d.hypervisors.filter((h) => h.nve === n.id).map((h) => h.nvePort));
        for (const p of c.ports) assert.ok(ns(n.ns).run(["ip", "link", "show", "dev", p.name]).code === 0, `${p.name} exists in ${n.ns}`);
        assert.is(c.vnics.length > 0, withVnics);
        assert.ok(c.remotes.some((r) => r.ip === d.kernelVxlan.underlay.ip) && c.remotes.some((r) => r.ip === d.ovsVtep.underlay.ip));
      }
    }
  });

  lab("every veth of the lab keeps its default offloads (checksum, TSO) and no namespace holds a static neighbour (issue 11)", () => {
    let veths = 0;
    for (const n of labNamespaces(d)) {
      const perm = ns(n).run(["ip", "-j", "neigh", "show", "nud", "permanent"]);
      assert.is(perm.code, 0, perm.stderr);
      assert.equal(JSON.parse(perm.stdout || "[]"), [], `${n}: no static neighbour`);
      const links = JSON.parse(ns(n).run(["ip", "-j", "link", "show", "type", "veth"]).stdout || "[]") as { ifname: string }[];
      for (const l of links) {
        const k = ns(n).run(["ethtool", "-k", l.ifname]);
        assert.is(k.code, 0, k.stderr);
        assert.match(k.stdout, /^tx-checksumming: on/m, `${n}/${l.ifname}: TX checksum offload on`);
        assert.match(k.stdout, /^tcp-segmentation-offload: on/m, `${n}/${l.ifname}: TSO on`);
        veths++;
      }
    }
    // both ends of every link: the VMs', trunks, underlay ports and the OVS peer's hosts
    assert.is(veths, 2 * (d.vms.length + d.hypervisors.length + d.nves.length + 2 + d.ovsVtep.tunnels.length), "every veth looked at");
  });

  lab("lab up again changes nothing (idempotent)", () => {
    const before = d.hypervisors.map((h) => ovsPids(h.ovs).join(","));
    const r = cli(["lab", "up", "--id", id, "--state-dir", stateDir, "--json"]);
    assert.is(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout), d);
    assert.equal(d.hypervisors.map((h) => ovsPids(h.ovs).join(",")), before, "same OVS daemons");
  });

  lab("a VM's frames leave the trunk with the tag set by setPortTag, and nothing leaves when parked", async () => {
    const v = vm("vm11"), h = hvOf("vm11"), nve = nveOf("vm11");
    const tag = 100 + (randomBytes(1)[0] % 200);
    const fromVm = (frames: Uint8Array[]) => frames.filter((f) => Buffer.from(f.subarray(6, 12)).toString("hex") === v.mac.replace(/:/g, ""));
    const ping = () => ns(v.ns).run(["ping", "-c", "2", "-i", "0.3", "-W", "1", "10.0.0.99"]);

    // Parked (the state lab up leaves): nothing of the VM reaches the NVE.
    assert.is(await getPortTag(h.ovs.db, v.ovsPort), PARKING_VLAN);
    let cap = await capture(nve.ns, h.nvePort, { count: 50, timeoutMs: 2000, direction: "in" });
    ping();
    assert.equal(fromVm(await cap.done), [], "no frame from a parked port");

    await setPortTag(h.ovs.db, v.ovsPort, tag);
    cap = await capture(nve.ns, h.nvePort, { count: 1, timeoutMs: 8000, direction: "in", filter: ["ether", "src", v.mac] });
    // OVS applies the new tag to its cached datapath flows when its revalidator
    // runs, a little after ovs-vsctl returns: ask (ARP) again until a frame shows.
    let got: Uint8Array[] | undefined;
    for (let i = 0; i < 6 && !got; i++) {
      ns(v.ns).run(["ping", "-c", "1", "-W", "1", "10.0.0.99"]);
      got = await Promise.race([cap.done, new Promise<undefined>((r) => setTimeout(r, 200))]);
    }
    const frames = fromVm(got ?? await cap.done);
    assert.ok(frames.length >= 1, "the VM's ARP request reached the NVE's end of the trunk");
    const f = Buffer.from(frames[0]);
    assert.is(f.readUInt16BE(12), 0x8100, "802.1Q TPID");
    assert.is(f.readUInt16BE(14) & 0x0fff, tag, "VID = the tag set");
    assert.is(f.readUInt16BE(16), 0x0806, "inner EtherType: ARP");

    await clearPortTag(h.ovs.db, v.ovsPort);
    await new Promise((r) => setTimeout(r, 500)); // the revalidator's turn (see above)
    cap = await capture(nve.ns, h.nvePort, { count: 50, timeoutMs: 2000, direction: "in" });
    ping();
    assert.equal(fromVm(await cap.done), [], "no frame after clearPortTag");
  });

  lab("the OVS driver refuses bad input with a clear error and changes nothing", async () => {
    const v = vm("vm12"), h = hvOf("vm12");
    await setPortTag(h.ovs.db, v.ovsPort, 7);
    for (const [args, re] of [
      [[h.ovs.db, v.ovsPort, 0], /tag 0 .*1\.\.4094/],
      [[h.ovs.db, v.ovsPort, 4095], /tag 4095/],
      [[h.ovs.db, v.ovsPort, 7.5], /tag 7\.5/],
      [[h.ovs.db, "nvl-nosuch", 8], /OVS port "nvl-nosuch" does not exist/],
      [[h.ovs.db, "bad port", 8], /not a valid port name/],
      [["unix:" + stateDir + "/nosuch.sock", v.ovsPort, 8], /does not answer/],
      [["db.sock", v.ovsPort, 8], /expected unix:PATH/],
    ] as [[string, string, number], RegExp][]) {
      try {
        await setPortTag(...args);
        assert.unreachable(`setPortTag(${args.join(", ")}) should fail`);
      } catch (e) {
        assert.instance(e, OvsDriverError);
        assert.match((e as Error).message, re);
      }
      assert.is(await getPortTag(h.ovs.db, v.ovsPort), 7, "tag unchanged");
    }
  });

  lab("the Linux VXLAN host's traffic is VXLAN on the underlay (tshark), flooded to every VTEP of the VN", async () => {
    const k = d.kernelVxlan;
    const cap = await capture(d.underlay.ns, k.underlay.routerPort, { count: 3, timeoutMs: 4000, direction: "in", filter: ["udp", "dst", "port", String(k.dstPort)] });
    ns(k.ns).run(["ping", "-c", "1", "-W", "1", vm("vm21").ip]);
    const frames = await cap.done;
    assert.ok(frames.length >= 1, "VXLAN frames from the kernel");
    if (TSHARK) {
      // The kernel VTEP (offloads on) leaves its outer UDP checksum partial
      // (CHECKSUM_PARTIAL) on the veth: finished only by a NIC or the receiver.
      const r = dissectFrames(frames, { fields: ["vxlan.vni", "ip.src", "ip.dst", "arp.dst.proto_ipv4"], prefs: ["udp.check_checksum:FALSE"] });
      assertClean(r, "kernel VXLAN frames");
      for (const f of r.frames) {
        assert.match(stack(f), /^eth:ethertype:ip:udp:vxlan:eth:ethertype:arp/);
        assert.equal(f.fields["vxlan.vni"], [String(k.vni)]);
        assert.is(f.fields["ip.src"][0], k.underlay.ip);
        assert.ok(k.flood.includes(f.fields["ip.dst"][0]), `outer dst ${f.fields["ip.dst"][0]} on the flood list`);
        assert.equal(f.fields["arp.dst.proto_ipv4"], [vm("vm21").ip]);
      }
    }
  });

  lab("the OVS peer's host traffic is Geneve (VNI of VN green) routed toward the NVEs (tshark)", async () => {
    const o = d.ovsVtep, t = o.tunnels.find((x) => x.type === "geneve")!;
    const cap = await capture(d.underlay.ns, o.underlay.routerPort, { count: 2, timeoutMs: 5000, direction: "in", filter: ["udp", "dst", "port", String(t.dstPort)] });
    ns(t.hostNs).run(["ping", "-c", "2", "-i", "0.5", "-W", "1", vm("vm12").ip]);
    const frames = await cap.done;
    assert.ok(frames.length >= 1, "Geneve frames from OVS");
    for (const fr of frames) {
      // OVS routes to the NVEs through the underlay router, as nvedge does (engine.ts).
      assert.is(Buffer.from(fr.subarray(0, 6)).toString("hex"), d.underlay.routerMac.replace(/:/g, ""));
    }
    if (TSHARK) {
      const r = dissectFrames(frames, { fields: ["geneve.vni", "geneve.proto_type", "ip.src", "ip.dst"] });
      assertClean(r, "OVS Geneve frames");
      for (const f of r.frames) {
        assert.match(stack(f), /^eth:ethertype:ip:udp:geneve:eth:ethertype:arp/);
        assert.equal(f.fields["geneve.vni"].map(Number), [t.vni]);
        assert.is(f.fields["ip.src"][0], o.underlay.ip);
        assert.ok(t.remotes.some((r) => r.ip === f.fields["ip.dst"][0]));
      }
    }
  });

  lab("the two peers nvedge did not write interoperate over VXLAN (Linux kernel <-> OVS userspace)", () => {
    const k = d.kernelVxlan, t = d.ovsVtep.tunnels.find((x) => x.type === "vxlan")!;
    // The first echo may be spent resolving ARP through OVS's tunnel neighbour cache.
    const r = ns(k.ns).run(["ping", "-c", "3", "-i", "0.3", "-W", "2", t.hostIp]);
    assert.match(r.stdout, /[1-3] received/, r.stdout + r.stderr);
  });

  lab("lab down removes every namespace, OVS daemon and file of the lab", async () => {
    const pids = labOvsInstances(d).flatMap(ovsPids);
    assert.ok(pids.length === 2 * labOvsInstances(d).length);
    const r = cli(["lab", "down", "--id", id, "--state-dir", stateDir, "--json"]);
    assert.is(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).namespaces.sort(), labNamespaces(d).sort());
    for (const n of labNamespaces(d)) assert.not.ok(namespaceExists(n), `${n} removed`);
    for (const p of pids) assert.not.ok(isLive(p), `OVS pid ${p} stopped`);
    assert.not.ok(existsSync(d.descriptionFile));
    assert.not.ok(existsSync(d.nves[0].config));
    assert.not.ok(existsSync(labOvsInstances(d)[0].dir));
  });

  lab.run();

  test("lab down after a partial up (two namespaces and one OVS instance) removes them", async () => {
    const pid = "p" + randomBytes(3).toString("hex");
    const dir = mkdtempSync("/tmp/nvl-lab-");
    const p = describeLab({ id: pid, stateDir: dir });
    try {
      const hv = p.hypervisors[0];
      for (const n of [p.underlay.ns, hv.ns]) assert.is(spawnSync("ip", ["netns", "add", n]).status, 0);
      startOvs(hv.ovs);
      const pids = ovsPids(hv.ovs);
      assert.is(pids.length, 2);
      await labDown({ id: pid, stateDir: dir });
      assert.not.ok(namespaceExists(p.underlay.ns));
      assert.not.ok(namespaceExists(hv.ns));
      for (const x of pids) assert.not.ok(isLive(x));
      assert.not.ok(existsSync(hv.ovs.dir));
    } finally {
      hardDown(p);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("bad lab ids and actions are usage errors (exit 2) that change nothing", () => {
    for (const args of [["lab", "up", "--id", "Bad_Id"], ["lab", "sideways"], ["lab"], ["lab", "up", "extra"], ["lab", "demo", "--duration", "-3"]]) {
      const r = cli(args);
      assert.is(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^nvedge lab: /);
    }
    assert.not.match(spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout, /Bad_Id/);
  });

  test.after(() => { rmSync(stateDir, { recursive: true, force: true }); });
  test.run();
}

function isLive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return !/\) [ZX] /.test(stat);
}
