// One VM migration between hypervisors (and NVEs) in the lab stack
// (lab-fixture.ts), the way RFC 8394 §3 and seed §4.3 say, shared by
// test/e2e-migration.test.ts and bench/migration.ts (issue 15: "measure 20
// migrations in the lab"):
//   1. the destination's agent pre-associates the VM (vn.connect activate:false,
//      addr.associate: its NVE names itself the MAC's next holder at the IMA);
//   2. the VM stops (the ping in it is paused: a live migration's
//      stop-and-copy) and the source's agent deactivates it (reason migration:
//      the source NVE's hold forwards its frames to the destination NVE);
//   3. its link moves: the source link goes down, the destination link gets the IP;
//   4. the destination's agent activates it (migration:true) and the VM resumes.
import type { ChildProcess } from "node:child_process";
import { daemonRequest } from "../../host/agent/control-client.js";
import { shAsync, sleep } from "../../host/sys/sh.js";
import type { LabStack } from "./lab-fixture.js";

/** Where the VM is or goes: its hypervisor, its NIC in the VM's namespace, and the OVS port that NIC is plugged into. */
export interface VmSite { hv: string; iface: string; port: string }

export interface MoveTimes { tPause: number; tAct: number; tActDone: number; tag: number }

/**
 * Moves the VM `vmName` from `from` to `to` while `pinger` (a ping inside the
 * VM's namespace) runs: it is paused from the deactivation to the activation's answer.
 * `neighbour` is put in the VM's ARP cache on the new link (the VM's memory moves with it).
 */
export async function moveVm(stack: LabStack, vmName: string, from: VmSite, to: VmSite, pinger: ChildProcess,
  neighbour: { ip: string; mac: string }, o: { preToStopMs?: number } = {}): Promise<MoveTimes> {
  const vm = stack.vm(vmName);
  const vn = stack.lab.vns.find((v) => v.id === vm.vn)!;
  const vnRef = { alias: vn.alias };
  const sockFrom = stack.agentSocket(from.hv), sockTo = stack.agentSocket(to.hv);
  // 1. pre-associate at the destination
  const conn = await daemonRequest(sockTo, { cmd: "connect", vnic: vm.vnic, vn: vnRef, activate: false, port: to.port }) as { tag: number };
  await daemonRequest(sockTo, { cmd: "associate", vnic: vm.vnic, vn: vnRef, addrs: [{ mac: vm.mac, ips: [vm.ip] }] });
  await sleep(o.preToStopMs ?? 500);
  // 2. stop and deactivate at the source
  pinger.kill("SIGSTOP");
  const tPause = Date.now();
  try {
    await daemonRequest(sockFrom, { cmd: "deactivate", vnic: vm.vnic, reason: "migration" });
    // 3. the link moves
    await shAsync(["ip", "-batch", "-"], { ns: vm.ns, input: [
      `link set ${from.iface} down`,
      `addr flush dev ${from.iface}`,
      `link set ${to.iface} up`,
      `addr replace ${vm.ip}/${vm.prefixLen} dev ${to.iface}`,
      `neigh replace ${neighbour.ip} lladdr ${neighbour.mac} dev ${to.iface} nud reachable`, ""].join("\n") });
    // 4. activate at the destination
    const tAct = Date.now();
    await daemonRequest(sockTo, { cmd: "activate", vnic: vm.vnic, migration: true });
    return { tPause, tAct, tActDone: Date.now(), tag: conn.tag };
  } finally {
    pinger.kill("SIGCONT");
  }
}

/** Lost echo requests of a `ping -n -D -O` run: sent, received, and the sequence numbers never answered. */
export function pingLosses(out: string): { sent: number; received: number; lostSeqs: number[] } | undefined {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  if (!m) return undefined;
  const sent = Number(m[1]), received = Number(m[2]);
  const answered = new Set([...out.matchAll(/icmp_seq=(\d+) ttl/g)].map((x) => Number(x[1])));
  return { sent, received, lostSeqs: Array.from({ length: sent }, (_, i) => i + 1).filter((q) => !answered.has(q)) };
}
