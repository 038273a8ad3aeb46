// The veth lab of issue 5 as data: a passive description of namespaces,
// links, addresses, Open vSwitch instances and remote VTEPs, kept apart from
// the engine that builds it (host/lab/engine.ts), as Snabb keeps its app graph
// apart from the engine that runs it (STYLE.md). Nothing here touches the
// system; `describeLab()` is a pure function of its options.
//
//   hv1 (OVS) --trunk--> nve-a --+                       +-- kvx  (Linux VXLAN device, VNI 5000)
//   hv3 (OVS) --trunk--> nve-a   +-- underlay (router) --+-- ovtep (OVS userspace: geneve VNI 6000, vxlan VNI 5000)
//   hv2 (OVS) --trunk--> nve-b --+
//
// hv1 and hv2 are the two hypervisors of the issue, each with two VMs (one per
// VN). hv3, a third, one-VM hypervisor on a SECOND port of nve-a, exists for
// the hairpin case (two VMs of one VN on different ports of one NVE): two VMs
// on the same OVS bridge and tag are switched by OVS itself and never reach
// the NVE, and two on the same NVE port are a `same-port` drop.
//
// Addresses are documentation/test ranges used only inside the namespaces:
// underlay 192.0.2.0/24 (RFC 5737 TEST-NET-1), overlay 10.0.0.0/24 (VN blue)
// and 10.0.1.0/24 (VN green).

export const LAB_PREFIX = "nvl-";

export interface LabVn {
  id: number;
  alias: string;
  name: string;          // the VN's uuid (PROTOCOL.md §2 `vn`)
  vni: number;
  encap: "vxlan" | "geneve";
  subnet: string;        // overlay IPv4 prefix of the VN
  /** The VN's IP MTU (PROTOCOL.md §5): underlay 1500 - 50 bytes of VXLAN/Geneve overhead (STANDARDS.md). */
  mtu: number;
  /** The tag the static configs (`*.static.json`) use on every port; the agent negotiates its own in the demo. */
  staticTag: number;
}

export interface LabVm {
  name: string;          // "vm11": hypervisor 1, VM 1
  ns: string;
  iface: string;         // the VM's NIC, inside ns
  hv: string;            // hypervisor id
  ovsPort: string;       // the other end of the VM's veth: an access port of the hypervisor's OVS bridge
  mac: string;
  ip: string;            // without prefix length
  prefixLen: number;
  vn: number;            // VN id
  vnic: string;          // VNIC name (uuid)
}

export interface OvsInstance {
  /** Namespace ovsdb-server and ovs-vswitchd run in. */
  ns: string;
  /** Directory with the database, pid files, logs and sockets (OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR). */
  dir: string;
  /** The `--db` argument for ovs-vsctl: `unix:<dir>/db.sock`. */
  db: string;
  /** ovs-vswitchd's unixctl socket, for `ovs-appctl -t`. */
  ctl: string;
}

export interface LabHypervisor {
  id: string;            // the agent's {hv}
  ns: string;
  nve: string;           // NVE id it is attached to
  bridge: string;        // OVS bridge (datapath_type=netdev)
  trunk: string;         // trunk port of the bridge (veth, in ns)
  nvePort: string;       // the trunk's other end, in the NVE's namespace: a `ports[].name` of the NVE config
  ovs: OvsInstance;
  vms: string[];         // VM names
}

export interface LabNve {
  id: string;
  ns: string;
  underlay: { iface: string; ip: string; mac: string; routerPort: string };
  ports: { name: string; hypervisors: string[] }[];
  config: string;        // the NVE config the demo runs (no vnics: the agents attach them)
  staticConfig: string;  // the same with every VM of its hypervisors as static, active vnics (tag = VN staticTag)
}

export interface LabUnderlay {
  ns: string;
  bridge: string;
  prefixLen: number;
  /** The router every overlay frame is sent to (INTERFACES.md `underlay.gateway`, its MAC resolved by ARP): the bridge's own address. */
  routerIp: string;
  routerMac: string;
  mtu: number;
}

export interface KernelVxlanPeer {
  ns: string;
  underlay: { iface: string; ip: string; mac: string; routerPort: string };
  device: string;        // the Linux VXLAN device
  vni: number;
  vn: number;
  dstPort: number;
  hostMac: string;       // the VXLAN device's MAC = the host's address in the VN
  hostIp: string;
  /** Underlay IPs the device floods to (its all-zeros FDB entries): every other VTEP of the VN. */
  flood: string[];
}

export interface OvsVtepPeer {
  ns: string;
  underlay: { iface: string; ip: string; mac: string; routerPort: string };
  ovs: OvsInstance;
  phyBridge: string;     // holds the underlay port; its internal port holds the underlay IP (userspace tunnelling)
  /**
   * OVS's ports toward the kernel are tap devices (OVS `type=tap`), each
   * joined to its veth by a Linux bridge in the peer's namespace (`tap` on
   * `linuxBridge`): OVS 3.1's userspace tunnels take neither partial checksums
   * nor TSO, and a tap OVS negotiated no offloads on makes the kernel finish
   * both before OVS reads a frame (host/lab/engine.ts).
   */
  underlayTap: { tap: string; linuxBridge: string };
  /** One bridge per VN: a host namespace on an access port plus one tunnel port per remote VTEP. */
  tunnels: { vn: number; vni: number; type: "geneve" | "vxlan"; bridge: string; dstPort: number;
             hostNs: string; hostIface: string; hostPeer: string; tap: string; linuxBridge: string; hostMac: string; hostIp: string;
             remotes: { port: string; ip: string }[] }[];
}

export interface LabDescription {
  /** Instance id ("" for the default lab); namespaces are `nvl-[id-]name`. */
  id: string;
  stateDir: string;
  descriptionFile: string;
  underlay: LabUnderlay;
  vns: LabVn[];
  nves: LabNve[];
  hypervisors: LabHypervisor[];
  vms: LabVm[];
  kernelVxlan: KernelVxlanPeer;
  ovsVtep: OvsVtepPeer;
}

export interface LabOptions {
  /** Instance id: lower-case letters and digits, 1..8; lets tests build a lab next to a running one. */
  id?: string;
  /** Where configs, the description and the OVS run directories go. */
  stateDir?: string;
}

export const LAB_ID_RE = /^[a-z0-9]{1,8}$/;

export function defaultStateDir(id = ""): string {
  const base = process.getuid?.() === 0 ? "/run" : (process.env.TMPDIR || "/tmp");
  return `${base}/nvedge-lab${id ? "-" + id : ""}`;
}

/** The lab, as data. Throws on a bad instance id. */
export function describeLab(o: LabOptions = {}): LabDescription {
  const id = o.id ?? "";
  if (id !== "" && !LAB_ID_RE.test(id)) throw new Error(`lab id "${id}" must be 1 to 8 lower-case letters or digits`);
  const stateDir = o.stateDir ?? defaultStateDir(id);
  const ns = (name: string) => `${LAB_PREFIX}${id ? id + "-" : ""}${name}`;
  const ovs = (name: string): OvsInstance => {
    const dir = `${stateDir}/ovs-${name}`;
    return { ns: ns(name), dir, db: `unix:${dir}/db.sock`, ctl: `${dir}/ovs-vswitchd.ctl` };
  };

  const vns: LabVn[] = [
    { id: 100, alias: "blue", name: "6f1c3c52-6c0e-4c5e-9a57-0c8f2a2f6a10", vni: 5000, encap: "vxlan", subnet: "10.0.0.0/24", mtu: 1450, staticTag: 10 },
    { id: 200, alias: "green", name: "9b2d7e14-3f8a-4c21-b6d0-7e5f1a2c3d40", vni: 6000, encap: "geneve", subnet: "10.0.1.0/24", mtu: 1450, staticTag: 20 },
  ];
  const blue = vns[0], green = vns[1];

  const underlay: LabUnderlay = { ns: ns("underlay"), bridge: "nvl-ubr", prefixLen: 24, routerIp: "192.0.2.254", routerMac: "02:00:00:00:01:fe", mtu: 1500 };

  // VM n of hypervisor h: name vm<h><n>, MAC 02:00:5e:00:0<h>:0<n>, IP .<h><n> in its VN's subnet.
  const vm = (h: number, n: number, vn: LabVn): LabVm => ({
    name: `vm${h}${n}`, ns: ns(`vm${h}${n}`), iface: "nvl-eth0", hv: `hv${h}`, ovsPort: `nvl-vm${h}${n}`,
    mac: `02:00:5e:00:0${h}:0${n}`, ip: vn.subnet.replace(/0\/24$/, `${h}${n}`), prefixLen: 24, vn: vn.id,
    vnic: `0d6c8a8e-2f5b-4a8e-8d2e-0000000000${h}${n}`,
  });
  const vms = [vm(1, 1, blue), vm(1, 2, green), vm(2, 1, blue), vm(2, 2, green), vm(3, 1, blue)];

  const hv = (h: number, nve: string, nvePort: string): LabHypervisor => ({
    id: `hv${h}`, ns: ns(`hv${h}`), nve, bridge: "nvl-br", trunk: "nvl-trunk", nvePort, ovs: ovs(`hv${h}`),
    vms: vms.filter((v) => v.hv === `hv${h}`).map((v) => v.name),
  });
  const hypervisors = [hv(1, "nve-a", "nvl-hv1"), hv(2, "nve-b", "nvl-hv2"), hv(3, "nve-a", "nvl-hv3")];

  const nve = (letter: "a" | "b", last: number): LabNve => ({
    id: `nve-${letter}`, ns: ns(`nve-${letter}`),
    underlay: { iface: "nvl-ul", ip: `192.0.2.${last}`, mac: `02:00:00:00:01:0${last}`, routerPort: `nvl-nve-${letter}` },
    ports: hypervisors.filter((h) => h.nve === `nve-${letter}`).map((h) => ({ name: h.nvePort, hypervisors: [h.id] })),
    config: `${stateDir}/nve-${letter}.json`,
    staticConfig: `${stateDir}/nve-${letter}.static.json`,
  });
  const nves = [nve("a", 1), nve("b", 2)];

  const kernelVxlan: KernelVxlanPeer = {
    ns: ns("kvx"),
    underlay: { iface: "nvl-ul", ip: "192.0.2.20", mac: "02:00:00:00:01:14", routerPort: "nvl-kvx" },
    device: "nvl-vx5000", vni: blue.vni, vn: blue.id, dstPort: 4789,
    hostMac: "02:00:5e:00:00:20", hostIp: "10.0.0.20",
    flood: ["192.0.2.1", "192.0.2.2", "192.0.2.30"],
  };

  const ovsVtep: OvsVtepPeer = {
    ns: ns("ovtep"),
    underlay: { iface: "nvl-ul", ip: "192.0.2.30", mac: "02:00:00:00:01:1e", routerPort: "nvl-ovtep" },
    ovs: ovs("ovtep"),
    phyBridge: "nvl-phy",
    underlayTap: { tap: "nvl-t-ul", linuxBridge: "nvl-b-ul" },
    tunnels: [
      { vn: green.id, vni: green.vni, type: "geneve", bridge: "nvl-gnv", dstPort: 6081,
        hostNs: ns("ovtep-g"), hostIface: "nvl-eth0", hostPeer: "nvl-h-gnv", tap: "nvl-t-gnv", linuxBridge: "nvl-b-gnv", hostMac: "02:00:5e:00:00:31", hostIp: "10.0.1.30",
        remotes: [{ port: "nvl-gnv-a", ip: "192.0.2.1" }, { port: "nvl-gnv-b", ip: "192.0.2.2" }] },
      { vn: blue.id, vni: blue.vni, type: "vxlan", bridge: "nvl-vxl", dstPort: 4789,
        hostNs: ns("ovtep-v"), hostIface: "nvl-eth0", hostPeer: "nvl-h-vxl", tap: "nvl-t-vxl", linuxBridge: "nvl-b-vxl", hostMac: "02:00:5e:00:00:30", hostIp: "10.0.0.30",
        remotes: [{ port: "nvl-vxl-a", ip: "192.0.2.1" }, { port: "nvl-vxl-b", ip: "192.0.2.2" }, { port: "nvl-vxl-k", ip: "192.0.2.20" }] },
    ],
  };

  return { id, stateDir, descriptionFile: `${stateDir}/lab.json`, underlay, vns, nves, hypervisors, vms, kernelVxlan, ovsVtep };
}

/** Every namespace of the lab, in build order (the underlay first, VMs last). */
export function labNamespaces(d: LabDescription): string[] {
  return [
    d.underlay.ns,
    ...d.nves.map((n) => n.ns),
    ...d.hypervisors.map((h) => h.ns),
    ...d.vms.map((v) => v.ns),
    d.kernelVxlan.ns,
    d.ovsVtep.ns,
    ...d.ovsVtep.tunnels.map((t) => t.hostNs),
  ];
}

/** Every OVS instance of the lab. */
export function labOvsInstances(d: LabDescription): OvsInstance[] {
  return [...d.hypervisors.map((h) => h.ovs), d.ovsVtep.ovs];
}

/** What a remote VTEP is to an NVE: the underlay IP, the VNs it serves and its addresses (static `remotes`). */
export interface RemoteEntry { nve: string; ip: string; vns: number[]; addrs: { vn: number; mac: string; ips: string[] }[] }

/**
 * The NVE configuration files of INTERFACES.md. `withVnics` adds every VM of
 * the NVE's hypervisors as a static, active VNIC tagged with its VN's
 * `staticTag` (what the control protocol would otherwise install); the
 * remote NVE's VMs are always listed as static remote addresses, as are the
 * hosts behind the kernel's VXLAN device and behind OVS, so the lab forwards
 * without an IMA.
 */
export function nveConfig(d: LabDescription, nveId: string, withVnics: boolean): object {
  const me = d.nves.find((n) => n.id === nveId);
  if (!me) throw new Error(`no NVE "${nveId}" in the lab`);
  const vmsOf = (nve: string) => d.vms.filter((v) => d.hypervisors.find((h) => h.id === v.hv)!.nve === nve);
  const portOf = (v: LabVm) => d.hypervisors.find((h) => h.id === v.hv)!.nvePort;
  const remotes: RemoteEntry[] = [];
  for (const other of d.nves) {
    if (other.id === me.id) continue;
    remotes.push({ nve: other.id, ip: other.underlay.ip, vns: d.vns.map((v) => v.id),
                   addrs: vmsOf(other.id).map((v) => ({ vn: v.vn, mac: v.mac, ips: [v.ip] })) });
  }
  const k = d.kernelVxlan;
  remotes.push({ nve: "kvx", ip: k.underlay.ip, vns: [k.vn], addrs: [{ vn: k.vn, mac: k.hostMac, ips: [k.hostIp] }] });
  const o = d.ovsVtep;
  remotes.push({ nve: "ovtep", ip: o.underlay.ip, vns: o.tunnels.map((t) => t.vn),
                 addrs: o.tunnels.map((t) => ({ vn: t.vn, mac: t.hostMac, ips: [t.hostIp] })) });
  return {
    nve: me.id,
    // the next hop by its IP: nvedge resolves its MAC with ARP (issue 11), no gatewayMac
    underlay: { port: me.underlay.iface, ip: me.underlay.ip, mac: me.underlay.mac, gateway: d.underlay.routerIp, udpPort: 4789, genevePort: 6081 },
    ports: me.ports,
    vns: d.vns.map((v) => ({ id: v.id, name: v.name, alias: v.alias, vni: v.vni,
                             profile: { encap: v.encap, service: "l2", mtu: v.mtu, portSecurity: true, arpSuppress: true, learn: "explicit" } })),
    vnics: withVnics ? vmsOf(me.id).map((v) => ({
      vnic: v.vnic, port: portOf(v), state: "active",
      vns: [{ vn: v.vn, tag: d.vns.find((n) => n.id === v.vn)!.staticTag, addrs: [{ mac: v.mac, ips: [v.ip] }] }],
    })) : [],
    remotes,
  };
}
