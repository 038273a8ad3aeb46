// The L3 service end to end (issue 14; seed §3.1.2): a VM on VN blue pings a
// VM on VN red through the anycast gateway, on one NVE and across two (the
// second by symmetric IRB over the domain's L3 VNI), real kernels on both
// ends and `nvedge run --io afpacket` in between. The VMs only know their
// subnet and a default route to the gateway address; the gateway's ARP
// answer, the routing and the TTL show in ping's output (one routed hop: 63;
// two, as symmetric IRB routes on both NVEs: 62).
//
// Topology (every namespace nvl-*, removed at the end even on failure):
//   vm1 (blue) ─┐                              ┌─ vm3 (red)
//   vm2 (red)  ─┴ hvA (bridge, VLAN trunk) ─ nveA ══ underlay ══ nveB ─ hvB ─┘
// The hypervisors are private Open vSwitch instances (userspace datapath, as in
// the lab; this kernel has neither 802.1Q devices nor bridge VLAN filtering):
// each VM on an access port of its VN's VLAN, the trunk tagged.
// The VNICs and the other NVE are static configuration (INTERFACES.md `vnics`,
// `remotes` with its `routerMac`), so no agent or IMA is needed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createNetns, removeNetns, uniqueName, vethPair, type Ns } from "./support/netns.js";
import { requireRootAnd } from "./support/tools.js";
import { ping, warmUp, BIN } from "./support/lab-fixture.js";
import { startOvs, stopOvs, vsctl } from "../host/lab/ovs.js";
import type { OvsInstance } from "../host/lab/topology.js";

const ROOT_OK = requireRootAnd(["ip", "ping", "ovs-vswitchd", "ovsdb-server", "ovs-vsctl"], "the L3 end-to-end namespaces");

const GW = "00:00:5e:00:01:01";
const UL = { a: { ip: "192.0.2.1", mac: "02:00:00:00:0a:01" }, b: { ip: "192.0.2.2", mac: "02:00:00:00:0b:01" } };
const VMS = {
  vm1: { mac: "02:00:5e:00:01:01", ip: "10.1.0.11", gw: "10.1.0.1", vn: 100, tag: 10, nve: "a" },
  vm2: { mac: "02:00:5e:00:02:02", ip: "10.2.0.12", gw: "10.2.0.1", vn: 200, tag: 20, nve: "a" },
  vm3: { mac: "02:00:5e:00:02:03", ip: "10.2.0.13", gw: "10.2.0.1", vn: 200, tag: 20, nve: "b" },
} as const;
type VmName = keyof typeof VMS;

function nveConfig(me: "a" | "b"): Record<string, unknown> {
  const other = me === "a" ? "b" : "a";
  const prof = (gw: string) => ({ encap: "vxlan", service: "l3", mtu: 1450, portSecurity: true,
    gateway: { ips: [`${gw}/24`], mac: GW }, l3domain: 1 });
  const mine = (Object.keys(VMS) as VmName[]).filter((n) => VMS[n].nve === me);
  const theirs = (Object.keys(VMS) as VmName[]).filter((n) => VMS[n].nve === other);
  return {
    nve: `nve-${me}`,
    // no gatewayMac: the other end of the link is resolved by ARP (issue 11), found on-link by the
    // kernel route the test gives the NVE's namespace (no address: the NVE is no IP stack on `ul`)
    underlay: { port: "ul", ip: UL[me].ip, mac: UL[me].mac },
    ports: [{ name: "acc1", hypervisors: [`hv-${me}`] }],
    l3domains: [{ id: 1, vni: 9001 }],
    vns: [{ id: 100, alias: "blue", vni: 5100, profile: prof("10.1.0.1") }, { id: 200, alias: "red", vni: 5200, profile: prof("10.2.0.1") }],
    vnics: mine.map((n, i) => ({ vnic: `00000000-0000-4000-8000-0000000000${me}${i}`, port: "acc1",
      vns: [{ vn: VMS[n].vn, tag: VMS[n].tag, addrs: [{ mac: VMS[n].mac, ips: [VMS[n].ip] }] }] })),
    remotes: [{ nve: `nve-${other}`, ip: UL[other].ip, routerMac: UL[other].mac, vns: [100, 200],
      addrs: theirs.map((n) => ({ vn: VMS[n].vn, mac: VMS[n].mac, ips: [VMS[n].ip] })) }],
  };
}

/**
 * A hypervisor: a private Open vSwitch (userspace datapath, as the lab's:
 * host/lab/ovs.ts) with the trunk to the NVE carrying the VLANs and one
 * access port per VM in its VN's VLAN.
 */
function hypervisor(hv: Ns, nve: Ns, vms: [Ns, VmName][], dir: string): OvsInstance {
  vethPair({ ns: nve, name: "acc1", mtu: 1500 }, { ns: hv, name: "trunk", mtu: 1500 });
  const o: OvsInstance = { ns: hv.name, dir, db: `unix:${dir}/db.sock`, ctl: `${dir}/ovs-vswitchd.ctl` };
  vms.forEach(([vm, name], i) => {
    const v = VMS[name];
    vethPair({ ns: vm, name: "eth0", mac: v.mac, mtu: 1450 }, { ns: hv, name: `p${i}` });
    vm.exec(["ip", "addr", "add", `${v.ip}/24`, "dev", "eth0"]);
    vm.exec(["ip", "route", "add", "default", "via", v.gw]);
  });
  startOvs(o);
  vsctl(o, ["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "--", "add-port", "br0", "trunk", "trunks=10,20",
            ...vms.flatMap(([, name], i) => ["--", "add-port", "br0", `p${i}`, `tag=${VMS[name].tag}`])]);
  return o;
}

test("a VM on blue pings a VM on red through the anycast gateway: on one NVE, and across two by symmetric IRB", async () => {
  if (!ROOT_OK) return;
  const made: Ns[] = [];
  const procs: ChildProcess[] = [];
  const ovs: OvsInstance[] = [];
  const logs: string[] = [];
  const dir = mkdtempSync("/tmp/nvl-l3-"); // short: OVS's unix socket paths (host/lab/ovs.ts)
  const mk = (tag: string) => { const n = createNetns(uniqueName(tag)); made.push(n); return n; };
  try {
    const [nveA, nveB, hvA, hvB, vm1, vm2, vm3] = ["l3na", "l3nb", "l3ha", "l3hb", "l3v1", "l3v2", "l3v3"].map(mk);
    vethPair({ ns: nveA, name: "ul", mac: UL.a.mac }, { ns: nveB, name: "ul", mac: UL.b.mac });
    for (const n of [nveA, nveB]) n.exec(["ip", "route", "add", "192.0.2.0/24", "dev", "ul"]);
    ovs.push(hypervisor(hvA, nveA, [[vm1, "vm1"], [vm2, "vm2"]], join(dir, "oa")));
    ovs.push(hypervisor(hvB, nveB, [[vm3, "vm3"]], join(dir, "ob")));
    for (const [me, n] of [["a", nveA], ["b", nveB]] as const) {
      const cfg = join(dir, `nve-${me}.json`);
      writeFileSync(cfg, JSON.stringify(nveConfig(me), null, 2));
      const argv = [process.execPath, BIN, "run", "--config", cfg, "--io", "afpacket", "--memory-store", "--listen", "127.0.0.1:18830",
        "--admin-socket", join(dir, `${me}.sock`), "--log-level", "warn"];
      const child = spawn("ip", ["netns", "exec", n.name, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
      child.stdout!.on("data", (d) => logs.push(`[nve-${me}] ${d}`));
      child.stderr!.on("data", (d) => logs.push(`[nve-${me}] ${d}`));
      procs.push(child);
    }
    const why = () => logs.join("").slice(-4000);
    // the gateway answers its own address (and ARP for it)
    try { await warmUp(vm1.name, VMS.vm1.gw, 20_000); } catch (e) { throw new Error(`${(e as Error).message}\n${logs.join("").slice(-4000)}`); }
    // one NVE: blue -> red, both VMs behind the same trunk (routed back out of the port it came in on)
    try { await warmUp(vm1.name, VMS.vm2.ip, 20_000); } catch (e) { throw new Error(`${(e as Error).message}\n${why()}`); }
    let r = await ping(vm1.name, VMS.vm2.ip, { count: 5 });
    assert.is(r.received, 5, r.out + why());
    assert.match(r.out, /ttl=63/, "one routed hop (the NVE's)");
    // two NVEs: blue on A -> red on B over the L3 VNI, both NVEs route (TTL - 2, as Linux's symmetric IRB)
    try { await warmUp(vm1.name, VMS.vm3.ip, 20_000); } catch (e) { throw new Error(`${(e as Error).message}\n${why()}`); }
    r = await ping(vm1.name, VMS.vm3.ip, { count: 5 });
    assert.is(r.received, 5, r.out + why());
    assert.match(r.out, /ttl=62/, "routed by both NVEs");
    // and back: red on B -> blue on A
    r = await ping(vm3.name, VMS.vm1.ip, { count: 3 });
    assert.is(r.received, 3, r.out + why());
    // the gateway answers ARP: the VMs learned the anycast MAC for their gateway
    const neigh = vm3.exec(["ip", "neigh", "show", VMS.vm3.gw]);
    assert.match(neigh, new RegExp(GW), neigh);
  } finally {
    for (const p of procs) { try { p.kill("SIGKILL"); } catch { /* gone */ } }
    for (const o of ovs) await stopOvs(o).catch(() => {});
    for (const n of made) removeNetns(n.name);
    rmSync(dir, { recursive: true, force: true });
  }
});

// A Linux host as FRR's EVPN type-5 setup builds it: a bridge per L3 VNI with
// the VXLAN device in it (the bridge's MAC is the host's router MAC), and the
// remote prefix installed as FRR does (route via the remote VTEP, onlink on
// the bridge; the VTEP's router MAC as its neighbour entry; an FDB entry
// sending that MAC to the VTEP). FRR puts all of it in the tenant's VRF; this
// kernel has no VRF devices (`ip link add x type vrf` is "Unknown device
// type"), so the host's own tables stand in for the VRF.
const KH = { ip: "192.0.2.2", mac: "02:00:00:00:0c:01", rmac: "02:00:00:00:0c:02", tenant: "10.9.0.5" };

function hostConfig(): Record<string, unknown> {
  const c = nveConfig("a") as Record<string, any>;
  // the host's tenant address: a binding in a routed VN of the domain, held by the host's VTEP
  c.vns.push({ id: 300, alias: "ext", vni: 5300, profile: { encap: "vxlan", service: "l3", mtu: 1450, gateway: { ips: ["10.9.0.1/24"], mac: GW }, l3domain: 1 } });
  c.vnics = c.vnics.filter((v: any) => v.vns[0].addrs[0].mac === VMS.vm1.mac);
  c.remotes = [{ nve: "khost", ip: KH.ip, routerMac: KH.rmac, vns: [300], addrs: [{ vn: 300, mac: KH.rmac, ips: [KH.tenant] }] }];
  return c;
}

test("a Linux host doing symmetric IRB (bridge + VXLAN for the L3 VNI, FRR's type-5 routes) reaches a VM behind nvedge, and back", async () => {
  if (!ROOT_OK) return;
  const made: Ns[] = [];
  const procs: ChildProcess[] = [];
  const ovs: OvsInstance[] = [];
  const logs: string[] = [];
  const dir = mkdtempSync("/tmp/nvl-l3-");
  const mk = (tag: string) => { const n = createNetns(uniqueName(tag)); made.push(n); return n; };
  try {
    const [nveA, hvA, vm1, kh] = ["l3na", "l3ha", "l3v1", "l3kh"].map(mk);
    vethPair({ ns: nveA, name: "ul", mac: UL.a.mac }, { ns: kh, name: "ul", mac: KH.mac });
    nveA.exec(["ip", "route", "add", "192.0.2.0/24", "dev", "ul"]);
    ovs.push(hypervisor(hvA, nveA, [[vm1, "vm1"]], join(dir, "oa")));
    // the host: underlay address, the L3 VNI's bridge and VXLAN device, its tenant address
    kh.exec(["ip", "addr", "add", `${KH.ip}/24`, "dev", "ul"]);
    kh.exec(["ip", "link", "add", "br9001", "address", KH.rmac, "type", "bridge"]);
    kh.exec(["ip", "link", "add", "vx9001", "type", "vxlan", "id", "9001", "local", KH.ip, "dstport", "4789", "nolearning", "dev", "ul"]);
    kh.exec(["ip", "link", "set", "vx9001", "master", "br9001"]);
    for (const d of ["vx9001", "br9001"]) kh.exec(["ip", "link", "set", d, "up"]);
    kh.exec(["ip", "addr", "add", `${KH.tenant}/32`, "dev", "lo"]); // (no dummy devices on this kernel either)
    // FRR's type-5 route for the VM's subnet: via nvedge's VTEP, onlink on the L3 VNI's bridge, its router MAC
    kh.exec(["ip", "route", "add", "10.1.0.0/24", "via", UL.a.ip, "dev", "br9001", "onlink", "src", KH.tenant]);
    kh.exec(["ip", "neigh", "add", UL.a.ip, "lladdr", UL.a.mac, "dev", "br9001", "nud", "permanent"]);
    kh.exec(["bridge", "fdb", "add", UL.a.mac, "dev", "vx9001", "dst", UL.a.ip, "self", "permanent"]);
    kh.exec(["bridge", "fdb", "add", UL.a.mac, "dev", "vx9001", "master", "static"]);
    const cfg = join(dir, "nve-a.json");
    writeFileSync(cfg, JSON.stringify(hostConfig(), null, 2));
    const child = spawn("ip", ["netns", "exec", nveA.name, process.execPath, BIN, "run", "--config", cfg, "--io", "afpacket", "--memory-store",
      "--listen", "127.0.0.1:18830", "--admin-socket", join(dir, "a.sock"), "--log-level", "warn"], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d) => logs.push(`[nve-a] ${d}`));
    child.stderr!.on("data", (d) => logs.push(`[nve-a] ${d}`));
    procs.push(child);
    const why = () => logs.join("").slice(-4000);
    // the host reaches the VM: routed by the host into the L3 VNI, by nvedge out of it to the VM
    try { await warmUp(kh.name, VMS.vm1.ip, 20_000); } catch (e) { throw new Error(`${(e as Error).message}\n${why()}`); }
    let r = await ping(kh.name, VMS.vm1.ip, { count: 5 });
    assert.is(r.received, 5, r.out + why());
    assert.match(r.out, /ttl=63/, "the VM's reply routed once (by nvedge; the host originates its own echo)");
    // and the VM reaches the host through its anycast gateway
    r = await ping(vm1.name, KH.tenant, { count: 3 });
    assert.is(r.received, 3, r.out + why());
    assert.match(r.out, /ttl=63/, "routed once by nvedge into the L3 VNI; the host answers itself");
  } finally {
    for (const p of procs) { try { p.kill("SIGKILL"); } catch { /* gone */ } }
    for (const o of ovs) await stopOvs(o).catch(() => {});
    for (const n of made) removeNetns(n.name);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
