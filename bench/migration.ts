// Issue 15 "hitless migration": VM migrations between NVEs in the veth/OVS
// lab (the whole stack with the IMA: test/support/lab-fixture.ts), a ping
// every 10 ms from the moving VM to a VM behind nve-a, and the pings lost per
// migration. vm11 goes back and forth between hv1 (nve-a) and hv2 (nve-b),
// each move as test/e2e-migration.test.ts makes it (test/support/migration.ts).
// Rows: one per migration (`migration-run`), then the summary (`migration`).
// Needs root, Open vSwitch, ping and ethtool (as the e2e tests).
//   node dist/bench/run.js --only migration      (20 migrations; --quick: 5)
import { spawn, spawnSync } from "node:child_process";
import { startLabStack, warmUp, dropDelta, type LabStack } from "../test/support/lab-fixture.js";
import { moveVm, pingLosses, type VmSite } from "../test/support/migration.js";
import { veth } from "../host/lab/engine.js";
import { vsctl } from "../host/lab/ovs.js";
import { PARKING_VLAN } from "../host/agent/ovs-driver.js";
import { shAsync, sleep } from "../host/sys/sh.js";

const INTERVAL_S = 0.01;
/** pings per migration: 0.5 s before the move, the move, and well after it (bounded by ping's -c and -w) */
const PINGS = 250;

export async function runMigrationBench(o: { quick?: boolean } = {}): Promise<object[]> {
  const runs = o.quick || process.env.NVEDGE_BENCH_QUICK === "1" ? 5 : 20;
  const rows: object[] = [];
  const emit = (r: object) => {
    rows.push(r);
    console.log(JSON.stringify(r));
  };
  if (process.getuid?.() !== 0) return [{ case: "migration", skipped: "needs root (the veth/OVS lab)" }];
  for (const tool of ["ovs-vswitchd", "ping", "ethtool"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return [{ case: "migration", skipped: `needs ${tool}` }];
  }
  let stack: LabStack | undefined;
  try {
    stack = await startLabStack({ ima: true });
    const vm11 = stack.vm("vm11"), vm31 = stack.vm("vm31");
    const hv2 = stack.lab.hypervisors.find((h) => h.id === "hv2")!;
    const vn = stack.lab.vns.find((v) => v.id === vm11.vn)!;
    // The VM's second NIC, plugged into hv2's bridge (parked until hv2's agent tags it).
    const site1: VmSite = { hv: vm11.hv, iface: vm11.iface, port: vm11.ovsPort };
    const site2: VmSite = { hv: "hv2", iface: "nvl-eth1", port: `nvl-m${vm11.name.slice(2)}` };
    veth({ ns: vm11.ns, name: site2.iface, mac: vm11.mac, mtu: vn.mtu }, { ns: hv2.ns, name: site2.port });
    vsctl(hv2.ovs, ["add-port", hv2.bridge, site2.port, `tag=${PARKING_VLAN}`, "protected=true"]);
    await shAsync(["ip", "link", "set", site2.port, "up"], { ns: hv2.ns });
    await warmUp(vm11.ns, vm31.ip);
    const neigh = await shAsync(["ip", "-j", "neigh", "show", vm31.ip, "dev", vm11.iface], { ns: vm11.ns });
    const neighbour = { ip: vm31.ip, mac: (JSON.parse(neigh.stdout) as { lladdr?: string }[])[0]?.lladdr ?? vm31.mac };
    const lost: number[] = [];
    for (let i = 0; i < runs; i++) {
      const [from, to] = i % 2 === 0 ? [site1, site2] : [site2, site1];
      let out = "";
      const pinger = spawn("ip", ["netns", "exec", vm11.ns, "ping", "-n", "-D", "-O",
        "-i", String(INTERVAL_S), "-W", "1", "-c", String(PINGS), vm31.ip], { stdio: ["ignore", "pipe", "pipe"] });
      pinger.stdout!.setEncoding("utf8").on("data", (d) => (out += d));
      const done = new Promise<void>((r) => pinger.on("close", () => r()));
      const killer = setTimeout(() => pinger.kill("SIGKILL"), (PINGS * INTERVAL_S + 20) * 1000);
      try {
        await sleep(300);
        const before = { a: await stack.counters("nve-a"), b: await stack.counters("nve-b") };
        const t = await moveVm(stack, "vm11", from, to, pinger, neighbour, { preToStopMs: 200 });
        await done;
        const l = pingLosses(out);
        if (!l) throw new Error(`migration ${i + 1}: no ping summary:\n${out.slice(-1000)}`);
        lost.push(l.sent - l.received);
        emit({ case: "migration-run", run: i + 1, from: `${from.hv}/${i % 2 === 0 ? "nve-a" : "nve-b"}`, to: `${to.hv}/${i % 2 === 0 ? "nve-b" : "nve-a"}`,
          pingsSent: l.sent, pingsLost: l.sent - l.received, lostSeqs: l.lostSeqs, pausedMs: t.tActDone - t.tPause, activateRequestMs: t.tActDone - t.tAct,
          drops: { "nve-a": dropDelta(before.a, await stack.counters("nve-a")), "nve-b": dropDelta(before.b, await stack.counters("nve-b")) } });
      } finally {
        clearTimeout(killer);
        pinger.kill("SIGCONT");
        pinger.kill("SIGKILL");
      }
      // The source's hold expires or the IMA's move reaches it; the next move starts from a settled state.
      await sleep(500);
    }
    emit({ case: "migration", runs, pingIntervalMs: INTERVAL_S * 1000, lostPerRun: lost, totalLost: lost.reduce((a, b) => a + b, 0),
      runsWithLoss: lost.filter((x) => x > 0).length });
  } catch (e) {
    emit({ case: "migration", error: (e as Error).message.split("\n")[0] });
  } finally {
    await stack?.close();
  }
  return rows;
}
