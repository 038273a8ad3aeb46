// The pair lab (issue 11): the smallest topology that carries a VM's TCP
// through an NVE to a remote VTEP, with every offload at its default, for
// bench/tcp.ts (nvedge against the kernel NVE on the same links) and
// test/e2e-tcp.test.ts (TCP both ways, an IPv6 underlay). No OVS, no router,
// no static neighbour and no gatewayMac: the remote VTEP is on the NVE's
// underlay subnet, so each side resolves the other by ARP / ND (nvedge
// itself: host/underlay/resolver.ts, "remotes on the same subnet are resolved
// directly").
//
//   [vm]  nvl-eth0 ==veth== nvl-trunk [dut] nvl-ul ==veth== nvl-ul [rem] + nvl-vx (Linux VXLAN VTEP, the remote host's address)
//
// - vm: the VM's TCP/IP stack on a veth with its default offloads (checksum
//   and TSO: partial checksums and GSO super-frames reach the NVE). This
//   kernel has no 802.1Q devices, so the hypervisor's access tag is pushed on
//   egress and popped on ingress by tc-BPF (bench/bpf/vlan.c, compiled here
//   with clang), as OVS's access port does in the veth lab.
// - dut: the device under test between the trunk and the underlay, started
//   by `startNvedge` (`nvedge run --io afpacket`) or `startKernelNve` (a
//   bridge and a VXLAN device, the same tc-BPF tag handling on the trunk).
// - rem: the remote VTEP, the Linux kernel's VXLAN device with the remote
//   host's address on it (its defaults: UDP checksums on, offloads on).
//
// Addresses: underlay 192.0.2.0/24 or 2001:db8:ffff::/64 (RFC 5737 / RFC
// 3849 documentation ranges), overlay 10.0.0.0/24, all inside the namespaces.
// `pairUp` removes what it made on failure and `pairDown` everything, whatever
// state it is in; every command is bounded in time.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { root as checkoutRoot } from "../paths.js";
import { sh, shAsync, have, sleep, netnsList, netnsPids, killPids } from "../sys/sh.js";
import { LAB_PREFIX } from "./topology.js";

const root = checkoutRoot.endsWith("/") ? checkoutRoot : `${checkoutRoot}/`;
const BIN = `${root}bin/nvedge.js`;
const VLAN_BPF = `${root}bench/bpf/vlan.c`;

export interface PairTopo {
  id: string;
  family: 4 | 6;
  workDir: string;
  vid: number;
  vni: number;
  /** The VN's IP MTU: the underlay's 1500 less the VXLAN overhead (50 bytes over IPv4, 70 over IPv6; STANDARDS.md). */
  mtu: number;
  vm: { ns: string; iface: string; mac: string; ip: string };
  dut: { ns: string; trunk: string; underlay: string; ip: string; mac: string; prefix: string };
  remote: { ns: string; underlay: string; ip: string; vx: string; hostMac: string; hostIp: string };
}

export interface PairOptions { family?: 4 | 6; workDir?: string }

/** Why the pair lab cannot be built here (a missing tool or header), or undefined. */
export function pairUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the pair lab needs root (network namespaces)";
  for (const [c, pkg] of [["ip", "iproute2"], ["tc", "iproute2"], ["bridge", "iproute2"], ["clang", "clang"], ["iperf3", "iperf3"]]) {
    if (!have(c)) return `${c} not found (Debian package ${pkg}, scripts/system-deps.sh)`;
  }
  if (!existsSync("/usr/include/bpf/bpf_helpers.h")) return "bpf/bpf_helpers.h not found (Debian package libbpf-dev)";
  return undefined;
}

export function describePair(o: PairOptions = {}): PairTopo {
  const family = o.family ?? 4;
  const id = "p" + randomBytes(3).toString("hex");
  const ns = (n: string) => `${LAB_PREFIX}${id}-${n}`;
  const v6 = family === 6;
  return {
    id, family, vid: 10, vni: 5000, mtu: v6 ? 1430 : 1450,
    workDir: o.workDir ?? mkdtempSync("/tmp/nvl-pair-"),
    vm: { ns: ns("vm"), iface: "nvl-eth0", mac: "02:00:5e:00:01:01", ip: "10.0.0.1" },
    dut: { ns: ns("dut"), trunk: "nvl-trunk", underlay: "nvl-ul", mac: "02:00:00:00:01:01",
           ip: v6 ? "2001:db8:ffff::1" : "192.0.2.1", prefix: v6 ? "2001:db8:ffff::/64" : "192.0.2.0/24" },
    remote: { ns: ns("rem"), underlay: "nvl-ul", ip: v6 ? "2001:db8:ffff::20" : "192.0.2.20", vx: "nvl-vx",
              hostMac: "02:00:5e:00:02:01", hostIp: "10.0.0.2" },
  };
}

const namespaces = (t: PairTopo) => [t.vm.ns, t.dut.ns, t.remote.ns];
const plen = (t: PairTopo) => (t.family === 6 ? 64 : 24);
const ipf = (t: PairTopo) => (t.family === 6 ? "-6" : "-4");

function bpfObject(t: PairTopo): string {
  const obj = `${t.workDir}/vlan.o`;
  if (!existsSync(obj)) {
    // clang -target bpf does not search the multiarch directory that holds asm/types.h.
    const inc = readdirSync("/usr/include").filter((d) => /-linux-gnu$/.test(d)).map((d) => `-I/usr/include/${d}`);
    sh(["clang", "-O2", "-g", "-target", "bpf", `-DVID=${t.vid}`, ...inc, "-c", VLAN_BPF, "-o", obj], { timeoutMs: 60_000 });
  }
  return obj;
}

/** The access tag pushed on egress and popped on ingress of `dev` (tc-BPF, bench/bpf/vlan.c). */
function tagWithBpf(t: PairTopo, ns: string, dev: string): void {
  const obj = bpfObject(t);
  sh(["tc", "qdisc", "add", "dev", dev, "clsact"], { ns });
  sh(["tc", "filter", "add", "dev", dev, "ingress", "bpf", "direct-action", "obj", obj, "sec", "tc/ingress"], { ns });
  sh(["tc", "filter", "add", "dev", dev, "egress", "bpf", "direct-action", "obj", obj, "sec", "tc/egress"], { ns });
}

/** Builds the pair lab (no DUT running). On failure removes what it made and throws. */
export async function pairUp(o: PairOptions = {}): Promise<PairTopo> {
  const t = describePair(o);
  mkdirSync(t.workDir, { recursive: true });
  try {
    const ip = (ns: string, ...a: string[]) => sh(["ip", "-n", ns, ...a]);
    for (const ns of namespaces(t)) {
      sh(["ip", "netns", "add", ns]);
      ip(ns, "link", "set", "lo", "up");
      // IPv6 off except on the underlay links of an IPv6 pair: no router
      // solicitations, MLD or DAD frames on the links under test.
      sh(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], { ns });
    }
    const { vm, dut, remote: r } = t;
    ip(vm.ns, "link", "add", vm.iface, "address", vm.mac, "mtu", String(t.mtu), "type", "veth", "peer", "name", dut.trunk, "netns", dut.ns, "mtu", String(t.mtu));
    // The uplink has the NVE's underlay MAC whichever DUT runs, so the
    // remote's neighbour entry for the DUT stays right from one to the next.
    ip(dut.ns, "link", "add", dut.underlay, "address", dut.mac, "type", "veth", "peer", "name", r.underlay, "netns", r.ns);
    ip(vm.ns, "link", "set", vm.iface, "up");
    ip(dut.ns, "link", "set", dut.trunk, "up");
    ip(dut.ns, "link", "set", dut.underlay, "up");
    ip(r.ns, "link", "set", r.underlay, "up");
    ip(vm.ns, "addr", "add", `${vm.ip}/24`, "dev", vm.iface);
    tagWithBpf(t, vm.ns, vm.iface);
    if (t.family === 6) {
      for (const ns of [dut.ns, r.ns]) sh(["sysctl", "-qw", `net.ipv6.conf.nvl-ul.disable_ipv6=0`, "net.ipv6.conf.nvl-ul.accept_dad=0"], { ns });
    }
    ip(r.ns, "addr", "add", `${r.ip}/${plen(t)}`, "dev", r.underlay, ...(t.family === 6 ? ["nodad"] : []));
    // The remote VTEP: Linux VXLAN with its defaults (UDP checksums on), its one peer the DUT.
    ip(r.ns, "link", "add", r.vx, "address", r.hostMac, "mtu", String(t.mtu), "type", "vxlan", "id", String(t.vni), "local", r.ip, "remote", dut.ip,
       "dstport", "4789", "dev", r.underlay);
    ip(r.ns, "link", "set", r.vx, "up");
    ip(r.ns, "addr", "add", `${r.hostIp}/24`, "dev", r.vx);
    return t;
  } catch (e) {
    await pairDown(t);
    throw e;
  }
}

/** Removes every namespace, process and file of the pair lab (whatever state it is in). */
export async function pairDown(t: PairTopo): Promise<string[]> {
  const present = new Set(netnsList());
  const ours = namespaces(t).filter((n) => present.has(n));
  await killPids(ours.flatMap(netnsPids));
  for (const ns of ours) sh(["ip", "netns", "del", ns], { allowFail: true });
  rmSync(t.workDir, { recursive: true, force: true });
  const left = new Set(netnsList());
  return namespaces(t).filter((n) => left.has(n));
}

// ---- the devices under test ---------------------------------------------------

export interface Dut { name: string; stop(): Promise<void>; /** nvedge's log so far (stderr, first 64 KiB). */ log?(): string; /** nvedge's process id (ip netns exec execs it in place). */ pid?: number }

/** The NVE configuration (INTERFACES.md): the VM as a static VNIC, the remote host as a static address; no gateway, no gatewayMac. */
export function pairNvedgeConfig(t: PairTopo): object {
  return {
    nve: "nve-pair",
    underlay: { port: t.dut.underlay, ip: t.dut.ip, mac: t.dut.mac, udpPort: 4789 },
    ports: [{ name: t.dut.trunk, hypervisors: ["hv-pair"] }],
    vns: [{ id: 100, alias: "pair", vni: t.vni, profile: { encap: "vxlan", mtu: t.mtu, portSecurity: true, arpSuppress: true, learn: "explicit" } }],
    vnics: [{ vnic: "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9c01", port: t.dut.trunk, state: "active",
              vns: [{ vn: 100, tag: t.vid, addrs: [{ mac: t.vm.mac, ips: [t.vm.ip] }] }] }],
    remotes: [{ nve: "rem", ip: t.remote.ip, vns: [100], addrs: [{ vn: 100, mac: t.remote.hostMac, ips: [t.remote.hostIp] }] }],
  };
}

export const pairStore = (t: PairTopo) => `${t.workDir}/store`;

/**
 * `nvedge run --io afpacket` (or `o.io`) in the DUT's namespace. The underlay link is
 * described to it by a kernel route without an address (the NVE is no IP
 * stack on it: the kernel would answer its VXLAN with ICMP port unreachable),
 * from which it finds the remote on-link and resolves it by ARP / ND.
 * Resolves once the VM reaches the remote host through it (bounded).
 */
export async function startNvedge(t: PairTopo, o: { workers?: number; tunnelGso?: "auto" | "off"; io?: "afpacket" | "afxdp"; sched?: "fair" | "fifo" | "off";
                                                    /** Another built checkout to run nvedge from (an A/B in the same rounds, bench/tcp TCP_ALT); default this one. */ checkout?: string } = {}): Promise<Dut> {
  const cfg = `${t.workDir}/nve-pair.json`;
  const c = pairNvedgeConfig(t) as { underlay: Record<string, unknown> };
  if (o.tunnelGso) c.underlay.tunnelGso = o.tunnelGso; // the encap super-frame output (host/io/tunnel-output.ts)
  writeFileSync(cfg, JSON.stringify(c, null, 2) + "\n");
  sh(["ip", ipf(t), "route", "replace", t.dut.prefix, "dev", t.dut.underlay], { ns: t.dut.ns });
  rmSync(pairStore(t), { recursive: true, force: true });
  const bin = o.checkout ? `${o.checkout.replace(/\/$/, "")}/bin/nvedge.js` : BIN;
  if (!existsSync(bin)) throw new Error(`${bin}: not found (a built checkout expected)`);
  const child: ChildProcess = spawn("ip", ["netns", "exec", t.dut.ns, process.execPath, bin, "run", "--config", cfg, "--io", o.io ?? "afpacket",
    "--workers", String(o.workers ?? 1), "--store", pairStore(t)],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...(o.sched ? { NVEDGE_IO_SCHED: o.sched } : {}) } });
  let stderr = "";
  let exited: number | string | null | undefined;
  child.stderr!.setEncoding("utf8").on("data", (d) => { if (stderr.length < 65536) stderr += d; });
  const gone = new Promise<void>((r) => child.on("exit", (code, sig) => { exited = code ?? sig; r(); }));
  const stop = async () => {
    if (exited === undefined) child.kill("SIGTERM");
    await Promise.race([gone, sleep(5000)]);
    if (exited === undefined) { child.kill("SIGKILL"); await Promise.race([gone, sleep(2000)]); }
    sh(["ip", ipf(t), "route", "del", t.dut.prefix, "dev", t.dut.underlay], { ns: t.dut.ns, allowFail: true });
    forget(t);
  };
  try {
    await reachable(t, 30_000, () => (exited !== undefined ? `nvedge run exited (${exited}): ${stderr.trim().split("\n").slice(-5).join(" / ")}` : undefined));
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${stderr.trim().split("\n").slice(-5).join("\n")}`);
  }
  return { name: "nvedge", stop, log: () => stderr, pid: child.pid };
}

/**
 * The Linux kernel as the NVE on the same links: a bridge with the trunk and
 * a VXLAN device toward the remote, the tag popped and pushed by tc-BPF on
 * the trunk (as on the VM's side), the underlay address on the uplink. The
 * VXLAN device sends UDP checksum 0 over IPv4, as nvedge does (RFC 7348 §5),
 * and checksums over IPv6 (RFC 8200 §8.1), its Linux default; the bridge's
 * FDB holds the same two bindings nvedge has as static config.
 */
export async function startKernelNve(t: PairTopo): Promise<Dut> {
  const ns = t.dut.ns;
  const ip = (...a: string[]) => sh(["ip", "-n", ns, ...a]);
  ip("link", "add", "nvl-br", "type", "bridge");
  ip("link", "add", "nvl-kvx", "mtu", String(t.mtu), "type", "vxlan", "id", String(t.vni), "local", t.dut.ip, "remote", t.remote.ip, "dstport", "4789",
     "dev", t.dut.underlay, "nolearning", ...(t.family === 4 ? ["noudpcsum"] : []));
  ip("link", "set", "nvl-kvx", "master", "nvl-br");
  ip("link", "set", t.dut.trunk, "master", "nvl-br");
  for (const d of ["nvl-kvx", "nvl-br"]) ip("link", "set", d, "up");
  ip("addr", "add", `${t.dut.ip}/${plen(t)}`, "dev", t.dut.underlay, ...(t.family === 6 ? ["nodad"] : []));
  sh(["bridge", "-n", ns, "fdb", "replace", t.vm.mac, "dev", t.dut.trunk, "master", "static"]);
  sh(["bridge", "-n", ns, "fdb", "replace", t.remote.hostMac, "dev", "nvl-kvx", "master", "static"]);
  tagWithBpf(t, ns, t.dut.trunk);
  const stop = async () => {
    sh(["tc", "qdisc", "del", "dev", t.dut.trunk, "clsact"], { ns, allowFail: true });
    ip("link", "set", t.dut.trunk, "nomaster");
    for (const d of ["nvl-kvx", "nvl-br"]) sh(["ip", "-n", ns, "link", "del", d], { allowFail: true });
    ip("addr", "flush", "dev", t.dut.underlay, "scope", "global");
    forget(t);
  };
  try {
    await reachable(t, 15_000, () => undefined);
  } catch (e) {
    await stop();
    throw e;
  }
  return { name: "kernel", stop };
}

/** Nothing of one DUT's neighbour state stays for the next: the VM and the remote VTEP resolve again. */
function forget(t: PairTopo): void {
  for (const n of [t.vm.ns, t.remote.ns]) sh(["ip", "-n", n, "neigh", "flush", "all"], { allowFail: true });
}

/** Pings the remote host from the VM until one echo is answered (bounded); `dead` names a reason to stop early. */
async function reachable(t: PairTopo, ms: number, dead: () => string | undefined): Promise<void> {
  const end = Date.now() + ms;
  let last = "";
  while (Date.now() < end) {
    const why = dead();
    if (why) throw new Error(why);
    const r = await shAsync(["ping", "-n", "-c", "1", "-W", "1", t.remote.hostIp], { ns: t.vm.ns, allowFail: true, timeoutMs: 5000 });
    if (r.code === 0) return;
    last = r.stdout + r.stderr;
    await sleep(200);
  }
  throw new Error(`the VM did not reach ${t.remote.hostIp} through the DUT within ${ms} ms\n${last}`);
}

// ---- TCP ------------------------------------------------------------------------

export interface IperfResult {
  /** What the receiver got, in bits per second, and in bytes. */
  bitsPerSecond: number;
  bytes: number;
  retransmits: number;
  seconds: number;
}

/**
 * One iperf3 TCP test between the VM and the remote host, bounded in time:
 * `encap` = the VM sends (through the NVE into the tunnel), `decap` = the
 * remote host sends (iperf3 -R). The server runs in the remote host's
 * namespace and serves this one test.
 */
export async function iperf(t: PairTopo, dir: "encap" | "decap", seconds: number): Promise<IperfResult> {
  const port = 5201;
  const srv = spawn("ip", ["netns", "exec", t.remote.ns, "iperf3", "-s", "-1", "--forceflush", "-B", t.remote.hostIp, "-p", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  srv.stdout!.setEncoding("utf8").on("data", (d) => { out += d; });
  const srvGone = new Promise<void>((r) => srv.on("exit", () => r()));
  try {
    const end = Date.now() + 5000;
    while (!out.includes("Server listening") && Date.now() < end) await sleep(50);
    if (!out.includes("Server listening")) throw new Error(`iperf3 server did not start: ${out}`);
    const r = await shAsync(["iperf3", "-c", t.remote.hostIp, "-p", String(port), "-t", String(seconds), "-J", ...(dir === "decap" ? ["-R"] : [])],
      { ns: t.vm.ns, allowFail: true, timeoutMs: (seconds + 20) * 1000 });
    let j: { error?: string; end?: { sum_received?: { bytes: number; bits_per_second: number; seconds: number }; sum_sent?: { retransmits?: number } } };
    try { j = JSON.parse(r.stdout); } catch { throw new Error(`iperf3 ${dir}: no JSON (exit ${r.code}): ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`); }
    if (j.error || r.code !== 0 || !j.end?.sum_received) throw new Error(`iperf3 ${dir} failed (exit ${r.code}): ${j.error ?? r.stderr.slice(0, 300)}`);
    const rec = j.end.sum_received;
    return { bitsPerSecond: rec.bits_per_second, bytes: rec.bytes, seconds: rec.seconds, retransmits: j.end.sum_sent?.retransmits ?? 0 };
  } finally {
    srv.kill("SIGKILL");
    await Promise.race([srvGone, sleep(2000)]);
  }
}
