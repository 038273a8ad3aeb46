// Network namespaces and veth pairs for the packet I/O tests and benchmarks.
// Every name starts with `nvl-` and carries a random part, so runs never clash
// and a leftover is recognisable; callers remove them in a finally block.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";

export function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export interface Netns {
  name: string;
  /** For the addon's `netns` option. */
  path: string;
  /** Runs a command inside the namespace (synchronously). */
  run(cmd: string, args: string[], input?: string | Buffer): string;
  /** Creates a veth pair inside the namespace, both ends up; returns their names. */
  veth(tag?: string): [string, string];
  remove(): void;
}

export function tmpNetns(tag = "io"): Netns {
  const rnd = randomBytes(3).toString("hex");
  const name = `nvl-${tag}-${rnd}`;
  ip("netns", "add", name);
  const ns: Netns = {
    name,
    path: `/run/netns/${name}`,
    run(cmd, args, input) {
      return execFileSync("ip", ["netns", "exec", name, cmd, ...args], {
        encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"], timeout: 20000,
      });
    },
    veth(t = "") {
      const base = `nvl-${randomBytes(3).toString("hex")}${t}`.slice(0, 13);
      const a = `${base}a`, b = `${base}b`;
      ip("-n", name, "link", "add", a, "type", "veth", "peer", "name", b);
      // No addresses and no IPv6 on test links: the kernel must not add its
      // own frames (router solicitations, DAD) to what a test counts.
      for (const d of [a, b]) {
        ns.run("sysctl", ["-qw", `net.ipv6.conf.${d}.disable_ipv6=1`]);
        ip("-n", name, "link", "set", d, "up");
      }
      return [a, b];
    },
    remove() {
      try { ip("netns", "del", name); } catch { /* already gone */ }
    },
  };
  try {
    ns.run("sysctl", ["-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns.run("ip", ["link", "set", "lo", "up"]);
  } catch (e) {
    ns.remove();
    throw e;
  }
  return ns;
}

/**
 * A plain Python AF_PACKET injector (independent of the addon and of
 * nvedge): the script that sends out of `ifname` every frame given on its
 * standard input, and that input. `vnetHdr`: the socket has PACKET_VNET_HDR,
 * each frame starts with its struct virtio_net_hdr (a GSO super-frame goes
 * out as one skb, as a VM's TSO would).
 */
export function injector(ifname: string, frames: Uint8Array[], o: { vnetHdr?: boolean } = {}): { script: string; input: string } {
  const script = [
    "import socket,sys",
    "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)",
    ...(o.vnetHdr ? ["s.setsockopt(263,15,1)"] : []), // SOL_PACKET, PACKET_VNET_HDR
    `s.bind((${JSON.stringify(ifname)},0))`,
    "for l in sys.stdin.read().split():",
    "    s.send(bytes.fromhex(l))",
  ].join("\n");
  return { script, input: frames.map((f) => Buffer.from(f).toString("hex")).join("\n") };
}

/** Sends raw frames out of `ifname` with the Python injector. */
export function injectFrames(ns: Netns, ifname: string, frames: Uint8Array[], o: { vnetHdr?: boolean } = {}): void {
  const { script, input } = injector(ifname, frames, o);
  ns.run("python3", ["-c", script], input);
}

/** A bounded tcpdump capture on `ifname`; `stop()` returns the frames (802.1Q tags as on the wire). */
export async function capture(ns: Netns, ifname: string, count: number, timeoutMs = 5000, filter: string[] = []): Promise<{ done: Promise<Uint8Array[]>; stamps: Promise<number[]> }> {
  const child: ChildProcess = spawn("ip", ["netns", "exec", ns.name, "timeout", String(Math.ceil(timeoutMs / 1000)),
    "tcpdump", "-i", ifname, "-Q", "in", "-U", "-n", "-B", "8192", "-w", "-", "-c", String(count), ...filter], { stdio: ["ignore", "pipe", "pipe"] });
  const chunks: Buffer[] = [];
  child.stdout!.on("data", (c: Buffer) => chunks.push(c));
  let err = "";
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 5000);
    child.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      if (err.includes("listening on")) { clearTimeout(t); resolve(); }
    });
    child.on("exit", () => { clearTimeout(t); reject(new Error(`tcpdump exited: ${err}`)); });
  });
  const done = new Promise<Uint8Array[]>((resolve) => {
    child.on("close", () => resolve(parsePcap(Buffer.concat(chunks))));
  });
  // when the kernel took each frame (ms since the epoch; the bench's first-frame time)
  const stamps = done.then(() => pcapStamps(Buffer.concat(chunks)));
  return { done, stamps };
}

/** Each frame's timestamp in a classic pcap file, in ms since the epoch (microsecond or nanosecond, either byte order). */
export function pcapStamps(buf: Buffer): number[] {
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nano = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const out: number[] = [];
  for (let o = 24; o + 16 <= buf.length;) {
    const incl = u32(o + 8);
    if (o + 16 + incl > buf.length) break;
    out.push(u32(o) * 1000 + u32(o + 4) / (nano ? 1e6 : 1e3));
    o += 16 + incl;
  }
  return out;
}

/** The frames of a classic pcap file (microsecond or nanosecond, either byte order). */
export function parsePcap(buf: Buffer): Uint8Array[] {
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const out: Uint8Array[] = [];
  for (let o = 24; o + 16 <= buf.length;) {
    const incl = u32(o + 8);
    if (o + 16 + incl > buf.length) break;
    out.push(new Uint8Array(buf.subarray(o + 16, o + 16 + incl)));
    o += 16 + incl;
  }
  return out;
}
