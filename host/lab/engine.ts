// The engine that builds and removes the lab described by host/lab/topology.ts.
// `labUp` is idempotent (a complete, healthy lab is left as it is; anything
// else is removed and built again) and `labDown` removes every namespace,
// process and file of the lab whatever state an interrupted `up` left.
//
// Underlay (found by trying, issue 5): the NVEs' underlay veths carry NO IP
// address in their namespace. nvedge reads them with AF_PACKET; if the kernel
// owned the address too it would answer every VXLAN/Geneve datagram with an
// ICMP port unreachable. nvedge answers ARP for its IP itself (issue 11), so
// the underlay router (the bridge's own address, 192.0.2.254, the
// `underlay.gateway` of both NVEs, whose MAC they resolve by ARP: no
// gatewayMac) resolves the NVEs like any host, and the remote VTEPs
// reach the NVEs through that router (/32 routes via 192.0.2.254), as nvedge
// reaches everything through it. No namespace holds a static neighbour and
// every veth keeps its default offloads (issue 11; test/lab.test.ts checks
// both). The router forwards out the interface it received on, so ICMP
// redirects are switched off.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { sh, have, killPids, netnsList, netnsPids, alive } from "../sys/sh.js";
import { startOvs, stopOvs, vsctl, ovsAnswers, ovsPids, waitForDevice } from "./ovs.js";
import { PARKING_VLAN, TRUNK_VLANS } from "../agent/ovs-driver.js";
import { describeLab, labNamespaces, labOvsInstances, nveConfig, type LabDescription, type LabOptions } from "./topology.js";

export interface LabFile { complete: boolean; createdAt: string; lab: LabDescription }

const TOOLS: [string, string][] = [
  ["ip", "iproute2"], ["bridge", "iproute2"], ["sysctl", "procps"],
  ["ovsdb-tool", "openvswitch-switch"], ["ovsdb-server", "openvswitch-switch"], ["ovs-vswitchd", "openvswitch-switch"],
  ["ovs-vsctl", "openvswitch-switch"], ["ovs-appctl", "openvswitch-switch"],
];

/** Throws one line naming what is missing: root, or a tool and its Debian package. */
export function checkPrerequisites(): void {
  if (process.getuid?.() !== 0) throw new Error("the lab needs root (network namespaces, veth pairs): run as root");
  for (const [cmd, pkg] of TOOLS) {
    if (!have(cmd)) throw new Error(`${cmd} not found: install the Debian package ${pkg} (scripts/system-deps.sh)`);
  }
}

export function readLabFile(d: LabDescription): LabFile | undefined {
  try {
    return JSON.parse(readFileSync(d.descriptionFile, "utf8")) as LabFile;
  } catch {
    return undefined;
  }
}

/** The lab is complete and healthy: description written, every namespace there, every OVS answering. */
export function labIsUp(d: LabDescription): boolean {
  const f = readLabFile(d);
  if (!f?.complete) return false;
  const have = new Set(netnsList());
  if (!labNamespaces(d).every((n) => have.has(n))) return false;
  return labOvsInstances(d).every(ovsAnswers);
}

export interface UpOptions extends LabOptions { log?: (line: string) => void }

export async function labUp(o: UpOptions = {}): Promise<LabDescription> {
  const d = describeLab(o);
  checkPrerequisites();
  const log = o.log ?? (() => {});
  if (labIsUp(d)) {
    log(`lab${d.id ? " " + d.id : ""} is already up (${d.descriptionFile})`);
    return d;
  }
  await labDown(d); // whatever a partial `up` left
  try {
    await build(d, log);
  } catch (e) {
    await labDown(d);
    throw e;
  }
  return d;
}

// ---- building ---------------------------------------------------------------

const ip = (ns: string, ...args: string[]) => sh(["ip", "-n", ns, ...args]);

function namespace(ns: string): void {
  sh(["ip", "netns", "add", ns]);
  ip(ns, "link", "set", "lo", "up");
  // IPv6 off: OVS's tap devices and the VMs would otherwise put router
  // solicitations, MLD reports and DAD probes on the trunks (see ovs.ts).
  sh(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], { ns });
}

interface End { ns: string; name: string; mac?: string; mtu?: number }

/** A veth pair created directly in its two namespaces (no name ever appears in the root namespace). */
export function veth(a: End, b: End): void {
  const side = (e: End) => [e.name, "netns", e.ns, ...(e.mac ? ["address", e.mac] : []), ...(e.mtu ? ["mtu", String(e.mtu)] : [])];
  sh(["ip", "link", "add", ...side(a), "type", "veth", "peer", "name", ...side(b)]);
  ip(a.ns, "link", "set", a.name, "up");
  ip(b.ns, "link", "set", b.name, "up");
}

async function build(d: LabDescription, log: (l: string) => void): Promise<void> {
  mkdirSync(d.stateDir, { recursive: true });
  writeLabFile(d, false);
  for (const ns of labNamespaces(d)) namespace(ns);
  log(`namespaces: ${labNamespaces(d).length}`);

  // The underlay: a Linux bridge whose own address is the router.
  const u = d.underlay;
  ip(u.ns, "link", "add", u.bridge, "address", u.routerMac, "type", "bridge");
  ip(u.ns, "addr", "add", `${u.routerIp}/${u.prefixLen}`, "dev", u.bridge);
  ip(u.ns, "link", "set", u.bridge, "up");
  sh(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0",
      `net.ipv4.conf.${u.bridge}.send_redirects=0`], { ns: u.ns });
  const attach = (p: { ns: string; underlay: { iface: string; mac: string; routerPort: string } }, mac = true) => {
    veth({ ns: p.ns, name: p.underlay.iface, mac: mac ? p.underlay.mac : undefined, mtu: u.mtu }, { ns: u.ns, name: p.underlay.routerPort, mtu: u.mtu });
    ip(u.ns, "link", "set", p.underlay.routerPort, "master", u.bridge);
  };
  // No neighbour entry for the NVEs: they answer ARP for their underlay IP
  // themselves (assembly/pipeline/host.ts, issue 11).
  for (const n of d.nves) attach(n);
  const viaRouter = (ns: string, dev: string) => {
    for (const n of d.nves) ip(ns, "route", "replace", `${n.underlay.ip}/32`, "via", u.routerIp, "dev", dev);
  };

  // The hypervisors: OVS, userspace datapath; VMs on access ports (the tag is
  // the agent's to set, ovs-driver.ts); the trunk to the NVE carries every VLAN.
  for (const h of d.hypervisors) {
    // The trunk's MTU is the largest VN MTU it carries (PROTOCOL.md §5: the
    // VN's IP MTU): OVS 3.1 re-derives a TSO frame's gso_size from its egress
    // port's MTU (netdev_linux_prepend_vnet_hdr), so a 1500-byte trunk would
    // make it cut a VM's TCP into segments above the VN MTU, which nvedge
    // drops as mtu-exceeded.
    const trunkMtu = Math.max(...d.vns.map((v) => v.mtu));
    veth({ ns: h.ns, name: h.trunk, mtu: trunkMtu }, { ns: d.nves.find((n) => n.id === h.nve)!.ns, name: h.nvePort, mtu: trunkMtu });
    for (const vmName of h.vms) {
      const vm = d.vms.find((v) => v.name === vmName)!;
      const vn = d.vns.find((v) => v.id === vm.vn)!;
      veth({ ns: vm.ns, name: vm.iface, mac: vm.mac, mtu: vn.mtu }, { ns: h.ns, name: vm.ovsPort });
      ip(vm.ns, "addr", "add", `${vm.ip}/${vm.prefixLen}`, "dev", vm.iface);
    }
    startOvs(h.ovs);
    vsctl(h.ovs, ["add-br", h.bridge, "--", "set", "bridge", h.bridge, "datapath_type=netdev",
                  // The trunk carries VLANs 1..4094 only: never the parking VLAN.
                  "--", "add-port", h.bridge, h.trunk, `trunks=${TRUNK_VLANS}`,
                  ...h.vms.flatMap((n) => {
                    const vm = d.vms.find((v) => v.name === n)!;
                    // Until the agent sets the tag the NVE returns, a VM port sits
                    // in the parking VLAN (ovs-driver.ts): isolated, nothing leaves.
                    return ["--", "add-port", h.bridge, vm.ovsPort, `tag=${PARKING_VLAN}`, "protected=true"];
                  })]);
    log(`${h.id}: OVS ${h.bridge} with ${h.vms.join(", ")} and trunk ${h.trunk} -> ${h.nve}:${h.nvePort}`);
  }

  // The Linux kernel's own VXLAN device: the VXLAN peer nvedge did not write.
  const k = d.kernelVxlan;
  attach(k);
  ip(k.ns, "addr", "add", `${k.underlay.ip}/${u.prefixLen}`, "dev", k.underlay.iface);
  viaRouter(k.ns, k.underlay.iface);
  ip(k.ns, "link", "add", k.device, "address", k.hostMac, "type", "vxlan", "id", String(k.vni), "local", k.underlay.ip,
     "dstport", String(k.dstPort), "dev", k.underlay.iface);
  ip(k.ns, "link", "set", k.device, "up");
  ip(k.ns, "addr", "add", `${k.hostIp}/24`, "dev", k.device);
  // Head-end replication list (RFC 7348 §4.2 without multicast): one all-zeros FDB entry per VTEP.
  for (const dst of k.flood) sh(["bridge", "-n", k.ns, "fdb", "append", "00:00:00:00:00:00", "dev", k.device, "dst", dst]);
  log(`kvx: Linux VXLAN ${k.device} VNI ${k.vni}, host ${k.hostIp} (${k.hostMac})`);

  // Open vSwitch in userspace tunnelling mode: the underlay port is on a
  // bridge whose internal port holds the underlay IP; OVS routes and resolves
  // the tunnels' outer headers itself (it reads the namespace's kernel routes).
  //
  // Offloads stay at their defaults here too (issue 11), but OVS 3.1's
  // userspace tunnels cannot take them: a tunnel port verifies a non-zero
  // outer UDP checksum in software, so the kernel VTEP's, left partial
  // (CHECKSUM_PARTIAL) and forwarded so by the router, fail (seen as
  // datapath_drop_tunnel_pop_error in `ovs-appctl coverage/show`); and tunnel
  // push neither finishes a partial inner checksum nor segments a TSO frame
  // (it sends the first unfinished and drops the second), which a host's TCP
  // on veth always carries. So every OVS port toward the kernel is a
  // tap device (`type=tap`, as a VM's QEMU tap would be) joined to its veth by
  // a Linux bridge, and this OVS runs without userspace-tso-enable, so it asks
  // no offload of its taps (TUNSETOFFLOAD): a tap's default features have no
  // checksum or segmentation offload, and the kernel finishes both (software
  // checksum and GSO, as for any such device) before OVS reads the frame. The
  // hypervisors' OVS keep userspace-tso-enable and hand their VMs' offloads on
  // to nvedge, which takes them (assembly/pipeline/offload.ts).
  const o = d.ovsVtep;
  attach(o, false);
  for (const t of o.tunnels) {
    veth({ ns: t.hostNs, name: t.hostIface, mac: t.hostMac, mtu: d.vns.find((v) => v.id === t.vn)!.mtu }, { ns: o.ns, name: t.hostPeer });
    ip(t.hostNs, "addr", "add", `${t.hostIp}/24`, "dev", t.hostIface);
  }
  startOvs(o.ovs, { tso: false });
  /** Joins a veth and OVS's tap port (once OVS made it) with a Linux bridge. */
  const tapBridge = async (bridge: string, tap: string, peer: string, mtu: number) => {
    await waitForDevice(o.ns, tap);
    ip(o.ns, "link", "add", bridge, "type", "bridge");
    ip(o.ns, "link", "set", tap, "mtu", String(mtu));
    for (const dev of [tap, peer]) ip(o.ns, "link", "set", dev, "master", bridge, "up");
    ip(o.ns, "link", "set", bridge, "up");
  };
  const ul = o.underlayTap;
  vsctl(o.ovs, ["add-br", o.phyBridge, "--", "set", "bridge", o.phyBridge, "datapath_type=netdev", `other_config:hwaddr=${o.underlay.mac}`,
                "--", "add-port", o.phyBridge, ul.tap, "--", "set", "interface", ul.tap, "type=tap"]);
  await tapBridge(ul.linuxBridge, ul.tap, o.underlay.iface, u.mtu);
  await waitForDevice(o.ns, o.phyBridge);
  ip(o.ns, "link", "set", o.phyBridge, "up");
  ip(o.ns, "addr", "add", `${o.underlay.ip}/${u.prefixLen}`, "dev", o.phyBridge);
  viaRouter(o.ns, o.phyBridge);
  for (const t of o.tunnels) {
    vsctl(o.ovs, ["add-br", t.bridge, "--", "set", "bridge", t.bridge, "datapath_type=netdev",
                  "--", "add-port", t.bridge, t.tap, "--", "set", "interface", t.tap, "type=tap",
                  ...t.remotes.flatMap((r) => [
                    "--", "add-port", t.bridge, r.port,
                    "--", "set", "interface", r.port, `type=${t.type}`, `options:remote_ip=${r.ip}`, `options:key=${t.vni}`,
                    `options:dst_port=${t.dstPort}`,
                    // Split horizon: what one tunnel brings is never sent into another
                    // (a protected port forwards to no other protected port).
                    "--", "set", "port", r.port, "protected=true"])]);
    await tapBridge(t.linuxBridge, t.tap, t.hostPeer, d.vns.find((v) => v.id === t.vn)!.mtu);
    log(`ovtep: OVS ${t.bridge} ${t.type} VNI ${t.vni} to ${t.remotes.map((r) => r.ip).join(", ")}, host ${t.hostIp} (${t.hostMac})`);
  }

  for (const n of d.nves) {
    writeFileSync(n.config, JSON.stringify(nveConfig(d, n.id, false), null, 2) + "\n");
    writeFileSync(n.staticConfig, JSON.stringify(nveConfig(d, n.id, true), null, 2) + "\n");
  }
  writeLabFile(d, true);
  log(`lab up: ${d.descriptionFile}`);
}

function writeLabFile(d: LabDescription, complete: boolean): void {
  const f: LabFile = { complete, createdAt: new Date().toISOString(), lab: d };
  writeFileSync(d.descriptionFile, JSON.stringify(f, null, 2) + "\n");
}

// ---- removing ---------------------------------------------------------------

/** Pids whose command line mentions `needle` (e.g. an OVS directory), so a daemon outside any namespace is found too. */
function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(needle)) out.push(pid);
    } catch { /* exited */ }
  }
  return out.filter(alive);
}

export interface DownReport { namespaces: string[]; killed: number[] }

/** Removes the lab: every process in its namespaces, its OVS daemons, its namespaces and its files. */
export async function labDown(o: LabOptions | LabDescription = {}): Promise<DownReport> {
  const d = "descriptionFile" in o ? o : describeLab(o);
  const present = new Set(netnsList());
  const namespaces = labNamespaces(d).filter((n) => present.has(n));
  const pids = new Set<number>();
  for (const ns of namespaces) for (const p of netnsPids(ns)) pids.add(p);
  for (const inst of labOvsInstances(d)) {
    for (const p of ovsPids(inst)) pids.add(p);
    for (const p of pidsMentioning(inst.dir + "/")) pids.add(p);
  }
  const killed = [...pids].filter(alive);
  await killPids(killed);
  for (const ns of namespaces) sh(["ip", "netns", "del", ns], { allowFail: true });
  for (const inst of labOvsInstances(d)) await stopOvs(inst);
  removeStateFiles(d);
  return { namespaces, killed };
}

/** Removes only what the lab writes into its state directory, then the directory if empty. */
function removeStateFiles(d: LabDescription): void {
  if (!existsSync(d.stateDir)) return;
  for (const n of d.nves) {
    rmSync(n.config, { force: true });
    rmSync(n.staticConfig, { force: true });
  }
  for (const name of readdirSync(d.stateDir)) {
    if (/^(ovs-[a-z0-9-]+|demo|relay-.*\.sock|.*\.log|nve-[ab]-store|agent-.*)$/.test(name)) rmSync(`${d.stateDir}/${name}`, { recursive: true, force: true });
  }
  rmSync(d.descriptionFile, { force: true });
  try { rmdirSync(d.stateDir); } catch { /* not empty: someone else's files stay */ }
}
