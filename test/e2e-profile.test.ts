// The VN profile end to end (issue 14): `nvedge run` with real AF_PACKET I/O
// in a namespace of its own, a hypervisor's userspace Open vSwitch (as the
// lab's: host/lab/ovs.ts) tagging its VMs' ports onto two trunks to the
// NVE's access ports, VMs as namespaces, real kernels' TCP, ARP and ICMP:
//   - an ACL that denies TCP port 22 (PROTOCOL.md §5): a connection to port
//     22 never opens, iperf3 on port 5201 passes, `show acl` counts the
//     denied SYNs; ARP still resolves (ARP follows port security);
//   - gleaning: a host behind the hypervisor's bridge on VN green's tag
//     whose MAC and IP nobody signalled (the VN's signalled VNIC on that
//     port is another: the bridging VM's; this kernel has no bridge or
//     802.1Q module, so the hypervisor's OVS does the bridging): under port
//     security it is reachable once gleaned, and `show bindings` marks its
//     binding glean.
// Every namespace is `nvl-` and removed whatever happens; every wait is bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { withNetns, vethPair, type Ns } from "./support/netns.js";
import { requireRootAnd } from "./support/tools.js";
import { adminRequest } from "../host/control/admin.js";
import { until, runNvedge } from "./support/control-harness.js";
import { startOvs, stopOvs, vsctl } from "../host/lab/ovs.js";
import type { OvsInstance } from "../host/lab/topology.js";

const READY = requireRootAnd(["iperf3", "ping", "ovs-vswitchd", "ovsdb-server"], "the ACL and gleaning end to end through nvedge run on veth pairs");
const BIN = fileURLToPath(new URL("../../bin/nvedge.js", import.meta.url));

const V = (n: number) => `0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9c0${n}`;
const M1 = "02:00:5e:0e:00:01", M2 = "02:00:5e:0e:00:02", MB = "02:00:5e:0e:00:03", M4 = "02:00:5e:0e:00:04", MH = "02:00:5e:0e:00:50";

function config(): Record<string, unknown> {
  return {
    nve: "nve-e2e14",
    underlay: { port: "ul", ip: "192.0.2.1", mac: "02:00:00:00:01:01" }, // nothing behind it: no next hop to resolve
    ports: [{ name: "acc1", hypervisors: ["hv-1"] }, { name: "acc2", hypervisors: ["hv-2"] }],
    vns: [
      { id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan", mtu: 1500, portSecurity: true, arpSuppress: true,
        acl: [{ action: "deny", proto: "tcp", dstPort: 22 }] } },
      { id: 200, alias: "green", vni: 6000, profile: { encap: "vxlan", mtu: 1500, portSecurity: true, arpSuppress: true, learn: "glean" } },
    ],
    vnics: [
      { vnic: V(1), port: "acc1", vns: [{ vn: 100, tag: 10, addrs: [{ mac: M1, ips: ["10.1.0.1"] }] }] },
      { vnic: V(2), port: "acc2", vns: [{ vn: 100, tag: 20, addrs: [{ mac: M2, ips: ["10.1.0.2"] }] }] },
      // the bridging VM itself: signalled; the host behind it is not
      { vnic: V(3), port: "acc1", vns: [{ vn: 200, tag: 11, addrs: [{ mac: MB, ips: ["10.2.0.3"] }] }] },
      { vnic: V(4), port: "acc2", vns: [{ vn: 200, tag: 21, addrs: [{ mac: M4, ips: ["10.2.0.4"] }] }] },
    ],
  };
}

if (READY) test("e2e: an ACL blocks TCP port 22 while iperf3 on 5201 passes; a host behind a bridging VM is gleaned and reached", async () => {
  await withNetns(["nve", "hv", "vm1", "vm2", "vm4", "hid", "und"], async (nve, hv, vm1, vm2, vm4, hid, und) => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-e2e14-"));
    const ovs: OvsInstance = { ns: hv.name, dir: join(dir, "ovs"), db: `unix:${join(dir, "ovs", "db.sock")}`, ctl: join(dir, "ovs", "vswitchd.ctl") };
    vethPair({ ns: hv, name: "trunk1" }, { ns: nve, name: "acc1" });
    vethPair({ ns: hv, name: "trunk2" }, { ns: nve, name: "acc2" });
    vethPair({ ns: nve, name: "ul" }, { ns: und, name: "eth0" }); // the underlay: nothing behind it here
    const vmPort = (vm: Ns, port: string, mac: string, cidr: string) => {
      vethPair({ ns: vm, name: "eth0", mac }, { ns: hv, name: port });
      vm.exec(["ip", "addr", "add", cidr, "dev", "eth0"]);
    };
    vmPort(vm1, "p-vm1", M1, "10.1.0.1/24");
    vmPort(vm2, "p-vm2", M2, "10.1.0.2/24");
    vmPort(vm4, "p-vm4", M4, "10.2.0.4/24");
    vmPort(hid, "p-hid", MH, "10.2.0.50/24");
    startOvs(ovs);
    // hypervisor 1's trunk (acc1): vm1 on VN blue (tag 10), the host behind on VN green (tag 11);
    // hypervisor 2's (acc2): vm2 on blue (20), vm4 on green (21)
    vsctl(ovs, ["add-br", "br1", "--", "set", "bridge", "br1", "datapath_type=netdev", "--", "add-port", "br1", "trunk1", "trunks=10,11",
      "--", "add-port", "br1", "p-vm1", "tag=10", "--", "add-port", "br1", "p-hid", "tag=11"]);
    vsctl(ovs, ["add-br", "br2", "--", "set", "bridge", "br2", "datapath_type=netdev", "--", "add-port", "br2", "trunk2", "trunks=20,21",
      "--", "add-port", "br2", "p-vm2", "tag=20", "--", "add-port", "br2", "p-vm4", "tag=21"]);
    let nvedge: ChildProcess | undefined;
    let log = "";
    const servers: ChildProcess[] = [];
    try {
      writeFileSync(join(dir, "nve.json"), JSON.stringify(config()));
      const S = ["--store", join(dir, "st")];
      nvedge = spawn("ip", ["netns", "exec", nve.name, process.execPath, BIN, "run", "--config", join(dir, "nve.json"), ...S, "--workers", "1",
        "--listen", "127.0.0.1:18830"], { stdio: ["ignore", "ignore", "pipe"] });
      nvedge.stderr!.on("data", (d) => { log = (log + d).slice(-50_000); });
      const sock = join(dir, "st", "nvedge.sock");
      await until(async () => {
        if (nvedge!.exitCode !== null) throw new Error(`nvedge run exited ${nvedge!.exitCode}:\n${log}`);
        return existsSync(sock) && adminRequest(sock, { cmd: "show", what: "ports" }, 2000).then(() => true, () => false);
      }, 60_000, "the NVE's admin socket");

      // ARP follows port security, not the ACL: the VMs resolve each other and ping
      const ping = vm1.run(["ping", "-c", "2", "-W", "2", "10.1.0.2"], { timeoutMs: 15_000 });
      assert.is(ping.code, 0, `ping through nvedge: ${ping.stdout}${ping.stderr}\n${log.slice(-2000)}`);
      // iperf3 on 5201 passes
      servers.push(spawn("ip", ["netns", "exec", vm2.name, "iperf3", "-s", "-1", "-p", "5201"], { stdio: "ignore" }));
      servers.push(spawn("ip", ["netns", "exec", vm2.name, "iperf3", "-s", "-1", "-p", "22"], { stdio: "ignore" }));
      await new Promise((r) => setTimeout(r, 500));
      const ok = vm1.run(["iperf3", "-c", "10.1.0.2", "-p", "5201", "-t", "2", "-J", "--connect-timeout", "3000"], { timeoutMs: 30_000 });
      assert.is(ok.code, 0, `iperf3 on 5201: ${ok.stdout.slice(-800)}${ok.stderr}`);
      const j = JSON.parse(ok.stdout);
      assert.ok(j.end.sum_received.bytes > 100_000, `iperf3 moved ${j.end.sum_received.bytes} bytes`);
      // port 22 never opens: the SYNs are denied by rule 0
      const no = vm1.run(["iperf3", "-c", "10.1.0.2", "-p", "22", "-t", "1", "--connect-timeout", "2000"], { timeoutMs: 20_000 });
      assert.is.not(no.code, 0, "iperf3 on port 22 must not connect");
      const acl = JSON.parse((await runNvedge(["show", "acl", "--json", ...S])).out);
      assert.is(acl[0].vn, 100);
      assert.ok(acl[0].rules[0].denied >= 1, `rule 0 denied ${acl[0].rules[0].denied} frames`);

      // gleaning: the hidden host answers ARP from behind the bridge, is learned, and pings back
      const g = vm4.run(["ping", "-c", "3", "-W", "2", "10.2.0.50"], { timeoutMs: 20_000 });
      assert.is(g.code, 0, `ping the host behind the bridging VM: ${g.stdout}${g.stderr}\n${log.slice(-2000)}`);
      let rows: { mac: string; ips: string[]; port: string; learn?: string }[] = [];
      await until(async () => {
        rows = JSON.parse((await runNvedge(["show", "bindings", "--json", "--mac", MH, ...S])).out);
        return rows.length === 1 && rows[0].ips.includes("10.2.0.50");
      }, 15_000, "the gleaned binding");
      assert.equal([rows[0].port, rows[0].learn], ["acc1", "glean"]);
    } finally {
      for (const s of servers) s.kill("SIGKILL");
      nvedge?.kill("SIGTERM");
      if (nvedge && nvedge.exitCode === null) await new Promise((r) => { const t = setTimeout(() => { nvedge!.kill("SIGKILL"); r(null); }, 5000); nvedge!.once("exit", () => { clearTimeout(t); r(null); }); });
      await stopOvs(ovs);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test.run();
