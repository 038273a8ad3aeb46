// One private Open vSwitch per lab namespace, userspace datapath only.
//
// What works on this kernel (found by trying, issue 5):
// - No OVS kernel module: every bridge is `datapath_type=netdev` and
//   ovs-vswitchd runs with `--disable-system` (otherwise it logs "failed to
//   enumerate system datapaths" every few seconds). veth ports are read and
//   written with AF_PACKET by ovs-vswitchd itself; internal ports are tap devices.
// - ovsdb-server and ovs-vswitchd are started by hand, each instance with its
//   own database, pid files, logs and unix sockets under one directory, and
//   OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR pointing there (ovs-vswitchd puts each
//   bridge's `<bridge>.mgmt` OpenFlow socket in OVS_RUNDIR). Both run under
//   `ip netns exec NS` so `ip netns pids NS` finds them and the lab can always
//   stop them; ovs-vswitchd must be in the namespace anyway, as it opens the
//   namespace's veths.
// - A unix socket path is limited to 107 bytes: the directory must be short.
// - `--detach` daemons are orphans re-parented to PID 1, which may leave them
//   as zombies for a while after they exit: "running" means alive and not Z.
// - Access ports (`tag=N`) add the 802.1Q tag on the trunk port (which has no
//   tag, hence carries every VLAN): exactly the split-NVE access model.
// - Offloads stay on everywhere (issue 11). A VM on veth with TX checksum
//   offload sends TCP/UDP checksums "partial" (CHECKSUM_PARTIAL) and TSO
//   super-frames; OVS reads them through AF_PACKET and, unless
//   other_config:userspace-tso-enable is set before ovs-vswitchd starts,
//   forwards them with the checksums unfinished (its netdev-linux asks for the
//   virtio-net header only then). With it, OVS passes the offload on to the
//   trunk veth, where nvedge's receiver reads the same header and finishes the
//   work (assembly/pipeline/offload.ts). OVS 3.1's userspace tunnels cannot
//   take those offloads, so the lab's OVS VTEP peer runs without the option
//   and meets the kernel through tap ports (host/lab/engine.ts).
// - IPv6 must be disabled in the namespace before OVS starts
//   (net.ipv6.conf.{all,default}.disable_ipv6=1): the tap devices of internal
//   ports otherwise send router solicitations and MLD reports onto the trunk.
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { sh, alive, killPids, sleep } from "../sys/sh.js";
import type { OvsInstance } from "./topology.js";

const SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema";

export function ovsEnv(o: OvsInstance): NodeJS.ProcessEnv {
  return { OVS_RUNDIR: o.dir, OVS_DBDIR: o.dir, OVS_LOGDIR: o.dir, OVS_SYSCONFDIR: o.dir };
}

/** ovs-vsctl against this instance's database (bounded: --timeout). */
export function vsctl(o: OvsInstance, args: string[], allowFail = false) {
  return sh(["ovs-vsctl", `--db=${o.db}`, "--timeout=10", ...args], { env: ovsEnv(o), allowFail, timeoutMs: 15_000 });
}

export function appctl(o: OvsInstance, args: string[], allowFail = false) {
  return sh(["ovs-appctl", "-t", o.ctl, "--timeout=10", ...args], { env: ovsEnv(o), allowFail, timeoutMs: 15_000 });
}

/** ovs-ofctl against a bridge's management socket (OpenFlow). */
export function ofctl(o: OvsInstance, bridge: string, args: string[], allowFail = false) {
  const [cmd, ...rest] = args;
  return sh(["ovs-ofctl", cmd, `unix:${o.dir}/${bridge}.mgmt`, ...rest], { env: ovsEnv(o), allowFail, timeoutMs: 15_000 });
}

function pidOf(o: OvsInstance, daemon: "ovsdb-server" | "ovs-vswitchd"): number | undefined {
  try {
    const pid = Number(readFileSync(`${o.dir}/${daemon}.pid`, "utf8").trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The live daemons of an instance (from their pid files). */
export function ovsPids(o: OvsInstance): number[] {
  return (["ovsdb-server", "ovs-vswitchd"] as const).map((d) => pidOf(o, d)).filter((p): p is number => p !== undefined && alive(p));
}

/**
 * Starts ovsdb-server and ovs-vswitchd for this instance inside its namespace; the namespace must exist.
 * `tso` (default on) sets other_config:userspace-tso-enable (see above); the
 * lab's OVS VTEP runs without it (host/lab/engine.ts).
 */
export function startOvs(o: OvsInstance, opts: { tso?: boolean } = {}): void {
  const sock = `${o.dir}/db.sock`;
  if (Buffer.byteLength(sock) > 107) throw new Error(`OVS socket path ${sock} is longer than a unix socket allows (107 bytes): use a shorter --state-dir`);
  if (!existsSync(SCHEMA)) throw new Error(`${SCHEMA} missing: install openvswitch-switch (scripts/system-deps.sh)`);
  mkdirSync(o.dir, { recursive: true });
  const env = ovsEnv(o);
  const db = `${o.dir}/conf.db`;
  if (!existsSync(db)) sh(["ovsdb-tool", "create", db, SCHEMA], { env });
  sh(["ovsdb-server", db, `--remote=punix:${sock}`, `--pidfile=${o.dir}/ovsdb-server.pid`, `--unixctl=${o.dir}/ovsdb-server.ctl`,
      "--detach", "--no-chdir", `--log-file=${o.dir}/ovsdb-server.log`, "-vconsole:off"], { ns: o.ns, env });
  vsctl(o, ["--no-wait", "init"]);
  if (opts.tso ?? true) vsctl(o, ["--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true"]);
  sh(["ovs-vswitchd", `unix:${sock}`, `--pidfile=${o.dir}/ovs-vswitchd.pid`, `--unixctl=${o.ctl}`, "--disable-system",
      "--detach", "--no-chdir", `--log-file=${o.dir}/ovs-vswitchd.log`, "-vconsole:off"], { ns: o.ns, env });
}

/** Whether the instance answers (ovsdb-server and ovs-vswitchd both up). */
export function ovsAnswers(o: OvsInstance): boolean {
  if (ovsPids(o).length !== 2) return false;
  return vsctl(o, ["show"], true).code === 0 && appctl(o, ["version"], true).code === 0;
}

/** Stops the instance's daemons (by pid file) and removes its directory. */
export async function stopOvs(o: OvsInstance): Promise<void> {
  await killPids(ovsPids(o));
  rmSync(o.dir, { recursive: true, force: true });
}

/** Waits (bounded) until ovs-vswitchd has created a bridge's internal (tap) device. */
export async function waitForDevice(ns: string, dev: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (sh(["ip", "-n", ns, "link", "show", "dev", dev], { allowFail: true }).code === 0) return;
    await sleep(50);
  }
  throw new Error(`OVS did not create ${dev} in ${ns} within ${timeoutMs} ms`);
}
