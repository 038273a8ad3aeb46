// Small helpers for tests that need network namespaces: run commands in a
// namespace, create veth pairs, capture frames (bounded), and `withNetns`,
// which creates uniquely named `nvl-` namespaces and removes them (and stops
// every process left inside) whatever the test does.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { parsePcap } from "../../host/pcap/pcap.js";

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The first of `cmds` that is not on PATH, or undefined when all are there. */
export function missingTool(...cmds: string[]): string | undefined {
  return cmds.find((c) => spawnSync("sh", ["-c", `command -v "$0"`, c], { stdio: "ignore" }).status !== 0);
}

export interface ExecOptions { input?: string; timeoutMs?: number; allowFail?: boolean }

export interface Ns {
  name: string;
  /** For APIs that take a namespace path (setns). */
  path: string;
  /** Runs argv inside the namespace; returns stdout; throws with stderr on failure unless allowFail. */
  exec(argv: string[], o?: ExecOptions): string;
  /** `exec` that also returns the exit code. */
  run(argv: string[], o?: ExecOptions): { code: number | null; stdout: string; stderr: string };
}

export function ns(name: string): Ns {
  const run = (argv: string[], o: ExecOptions = {}) => {
    const r = spawnSync("ip", ["netns", "exec", name, ...argv], {
      encoding: "utf8", input: o.input, timeout: o.timeoutMs ?? 20_000, stdio: ["pipe", "pipe", "pipe"],
    });
    return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  };
  return {
    name,
    path: `/run/netns/${name}`,
    run,
    exec(argv, o = {}) {
      const r = run(argv, o);
      if (r.code !== 0 && !o.allowFail) throw new Error(`in ${name}: \`${argv.join(" ")}\` failed (exit ${r.code}): ${r.stderr.trim()}`);
      return r.stdout;
    },
  };
}

export function uniqueName(tag: string): string {
  return `nvl-${tag}-${randomBytes(3).toString("hex")}`;
}

export function namespaceExists(name: string): boolean {
  const r = spawnSync("ip", ["-j", "netns", "list"], { encoding: "utf8" });
  try {
    return (JSON.parse(r.stdout || "[]") as { name: string }[]).some((n) => n.name === name);
  } catch {
    return false;
  }
}

/** Removes a namespace after stopping every process inside it. */
export function removeNetns(name: string): void {
  const pids = (spawnSync("ip", ["netns", "pids", name], { encoding: "utf8" }).stdout ?? "").split(/\s+/).filter(Boolean).map(Number);
  for (const p of pids) { try { process.kill(p, "SIGKILL"); } catch { /* gone */ } }
  spawnSync("ip", ["netns", "del", name], { stdio: "ignore" });
}

/** Creates one namespace: loopback up, IPv6 off (no kernel chatter in what a test counts). */
export function createNetns(name: string): Ns {
  const r = spawnSync("ip", ["netns", "add", name], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip netns add ${name}: ${r.stderr.trim()}`);
  const n = ns(name);
  try {
    n.exec(["ip", "link", "set", "lo", "up"]);
    n.exec(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
  } catch (e) {
    removeNetns(name);
    throw e;
  }
  return n;
}

/**
 * Runs `fn` with fresh namespaces named `nvl-<tag>-<random>` (one per tag) and
 * removes them afterwards, also when `fn` throws.
 */
export async function withNetns<T>(tags: string[], fn: (...nss: Ns[]) => Promise<T> | T): Promise<T> {
  const made: Ns[] = [];
  try {
    for (const t of tags) made.push(createNetns(uniqueName(t)));
    return await fn(...made);
  } finally {
    for (const n of made) removeNetns(n.name);
  }
}

export interface VethEnd { ns: Ns | string; name: string; mac?: string; mtu?: number }

/** A veth pair created directly in its namespaces (names never appear in the root namespace), both ends up. */
export function vethPair(a: VethEnd, b: VethEnd): void {
  const nsName = (e: VethEnd) => (typeof e.ns === "string" ? e.ns : e.ns.name);
  const side = (e: VethEnd) => [e.name, "netns", nsName(e), ...(e.mac ? ["address", e.mac] : []), ...(e.mtu ? ["mtu", String(e.mtu)] : [])];
  const r = spawnSync("ip", ["link", "add", ...side(a), "type", "veth", "peer", "name", ...side(b)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`veth ${a.name}/${b.name}: ${r.stderr.trim()}`);
  for (const e of [a, b]) ns(nsName(e)).exec(["ip", "link", "set", e.name, "up"]);
}

export interface Capture {
  /** Resolves with the captured frames when `count` frames arrived or the time bound passed. */
  done: Promise<Uint8Array[]>;
  stop(): void;
}

/**
 * A bounded tcpdump capture (802.1Q tags as on the wire: tcpdump re-inserts
 * the tag the kernel keeps out of band). Resolves once tcpdump listens.
 */
export async function capture(n: Ns | string, ifname: string, o: { count: number; timeoutMs?: number; filter?: string[]; direction?: "in" | "out" | "inout" }): Promise<Capture> {
  const name = typeof n === "string" ? n : n.name;
  const secs = Math.max(1, Math.ceil((o.timeoutMs ?? 5000) / 1000));
  const child = spawn("ip", ["netns", "exec", name, "timeout", String(secs), "tcpdump", "-i", ifname, "-Q", o.direction ?? "inout",
    "-U", "-n", "-w", "-", "-c", String(o.count), ...(o.filter ?? [])], { stdio: ["ignore", "pipe", "pipe"] });
  const chunks: Buffer[] = [];
  child.stdout!.on("data", (c: Buffer) => chunks.push(c));
  let err = "";
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`tcpdump on ${name}/${ifname} did not start: ${err}`)); }, 5000);
    child.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      if (err.includes("listening on")) { clearTimeout(t); resolve(); }
    });
    child.on("exit", () => { clearTimeout(t); reject(new Error(`tcpdump on ${name}/${ifname} exited: ${err.trim()}`)); });
  });
  const done = closed.then(() => {
    const buf = Buffer.concat(chunks);
    if (buf.length < 24) return [];
    return parsePcap(buf, `tcpdump ${ifname}`).packets.map((p) => p.frame);
  });
  return { done, stop: () => child.kill("SIGTERM") };
}

/** Interface counters (rx/tx packets and bytes) of a device in a namespace. */
export function linkStats(n: Ns | string, ifname: string): { rxPackets: number; txPackets: number; rxBytes: number; txBytes: number } {
  const name = typeof n === "string" ? n : n.name;
  const r = spawnSync("ip", ["-n", name, "-s", "-j", "link", "show", "dev", ifname], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip -n ${name} link show ${ifname}: ${r.stderr.trim()}`);
  const s = (JSON.parse(r.stdout) as { stats64: { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } }[])[0].stats64;
  return { rxPackets: s.rx.packets, txPackets: s.tx.packets, rxBytes: s.rx.bytes, txBytes: s.tx.bytes };
}
