// The underlay's routes (issue 11; INTERFACES.md: "The next hop is
// underlay.gateway (an IP) or, when absent, taken from the kernel's routing
// table in the NVE's namespace"). The kernel's table is read with iproute2
// (`ip -j route show table main`, JSON) and followed with `ip monitor route`,
// whose lines only say "something changed, read again". Why iproute2 and not
// an npm netlink binding: the one rtnetlink package on npm (`netlink`) is a
// native addon last released in 2024 that the build would have to compile or
// trust a prebuilt of, for what is here two dumps and one event stream; `ip`
// is on every machine that has the kernel's routes at all (the lab and tests
// use it already), its JSON is iproute2's stable output, and routes change
// seldom enough that a process per change costs nothing.
//
// Only routes out of the NVE's uplink count (underlay.port, or with
// underlay.vlan a VLAN device on it with that id): a default route through a
// management interface is not where tunnel frames go. The lookup is the
// kernel's own rule for the main table: longest prefix, then lowest metric; a
// multipath route is an ECMP set (RFC 2992), each member a next hop; a route
// without a gateway means the remote is on the link (same subnet) and is
// resolved itself; unreachable / blackhole / prohibit routes leave it without
// a next hop. Policy routing (other tables, rules) is not followed.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { parseIp } from "../domain/addr.js";

/** One route of `ip -j route show` (the fields used here). */
export interface KernelRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
  type?: string;
  flags?: string[];
  nexthops?: { gateway?: string; dev?: string; flags?: string[] }[];
}

/** What the routes say of one remote: its next hops (the remote itself when on-link), or none. */
export type RouteResult = { hops: string[]; onLink: boolean; via: string } | { hops: []; onLink: false; via: string | null };

export const MAX_ECMP = 8;

function prefixOf(dst: string, is6: boolean): { bytes: Uint8Array; len: number } | null {
  if (dst === "default") return { bytes: new Uint8Array(is6 ? 16 : 4), len: 0 };
  const [a, l] = dst.split("/");
  const ip = parseIp(a, false);
  if (!ip || ip.is6 !== is6) return null;
  const len = l === undefined ? (is6 ? 128 : 32) : Number(l);
  if (!Number.isInteger(len) || len < 0 || len > (is6 ? 128 : 32)) return null;
  return { bytes: ip.bytes, len };
}

function covers(p: { bytes: Uint8Array; len: number }, a: Uint8Array): boolean {
  const full = p.len >> 3, rest = p.len & 7;
  for (let i = 0; i < full; i++) if (p.bytes[i] !== a[i]) return false;
  if (rest === 0) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return (p.bytes[full] & m) === (a[full] & m);
}

const UNUSABLE = new Set(["unreachable", "blackhole", "prohibit", "throw"]);

/**
 * The next hops toward `ip` through the routes out of `devs` (longest prefix,
 * then lowest metric; routes of one prefix and metric are merged, as IPv6
 * multipath may be listed one route per member). `via` names the route, for
 * logs and `nvedge show neighbours`.
 */
export function routeLookup(routes: KernelRoute[], ip: string, devs: ReadonlySet<string>): RouteResult {
  const a = parseIp(ip, false);
  if (!a) return { hops: [], onLink: false, via: null };
  let best: { len: number; metric: number; routes: KernelRoute[] } | undefined;
  for (const r of routes) {
    const usable = UNUSABLE.has(r.type ?? "") || (r.dev !== undefined && devs.has(r.dev)) ||
      (r.nexthops ?? []).some((n) => n.dev !== undefined && devs.has(n.dev));
    if (!usable) continue;
    if (r.type && r.type !== "unicast" && !UNUSABLE.has(r.type)) continue; // local, broadcast, multicast, anycast
    const p = prefixOf(r.dst, a.is6);
    if (!p || !covers(p, a.bytes)) continue;
    const metric = r.metric ?? 0;
    if (!best || p.len > best.len || (p.len === best.len && metric < best.metric)) best = { len: p.len, metric, routes: [r] };
    else if (p.len === best.len && metric === best.metric) best.routes.push(r);
  }
  if (!best) return { hops: [], onLink: false, via: null };
  const via = best.routes[0].dst;
  if (best.routes.some((r) => UNUSABLE.has(r.type ?? ""))) return { hops: [], onLink: false, via: `${best.routes[0].type} ${via}` };
  const hops: string[] = [];
  let onLink = false;
  for (const r of best.routes) {
    const members = r.nexthops ?? [{ gateway: r.gateway, dev: r.dev, flags: r.flags }];
    for (const n of members) {
      if (n.dev === undefined || !devs.has(n.dev) || n.flags?.includes("dead")) continue;
      if (n.gateway === undefined) { onLink = true; continue; }
      const g = parseIp(n.gateway, false);
      if (!g || g.is6 !== a.is6) continue; // an IPv4 route via an IPv6 gateway (RFC 5549) is not followed
      if (!hops.includes(g.text) && hops.length < MAX_ECMP) hops.push(g.text);
    }
  }
  // on the link: the remote itself is the next hop (ARP/ND for it, issue 11 "same subnet")
  if (hops.length === 0 && onLink) return { hops: [a.text], onLink: true, via };
  return hops.length ? { hops, onLink: false, via } : { hops: [], onLink: false, via };
}

/** Where the routes come from: the kernel's table (kernelRoutes) or, in tests, a table they set. */
export interface RouteSource {
  /** The main table of the underlay's family. */
  dump(): Promise<KernelRoute[]>;
  /** The devices the uplink is known by (underlay.port and, with underlay.vlan, its VLAN device if the kernel has one). */
  devs(): Promise<string[]>;
  /** Calls `changed` after each change of the table; returns the stop function. */
  watch(changed: () => void): () => void;
}

function run(argv: string[], netns?: string): Promise<string> {
  const [cmd, args] = netns ? ["nsenter", [`--net=${netns}`, ...argv]] : [argv[0], argv.slice(1)];
  return new Promise((res, rej) => execFile(cmd, args, { timeout: 5000, maxBuffer: 64 << 20 }, (e, out, err) =>
    e ? rej(new Error(`${argv.join(" ")}: ${(err || e.message).trim()}`)) : res(out)));
}

/**
 * The kernel's routes in the NVE's namespace (this process's, or `netns`, a
 * path such as /run/netns/NAME, through nsenter).
 */
export function kernelRoutes(o: { is6: boolean; port: string; vlan?: number; netns?: string; log?: (l: string) => void }): RouteSource {
  const fam = o.is6 ? "-6" : "-4";
  return {
    dump: async () => {
      const out = await run(["ip", "-j", fam, "route", "show", "table", "main"], o.netns);
      return out.trim() ? JSON.parse(out) as KernelRoute[] : [];
    },
    devs: async () => {
      if (o.vlan === undefined) return [o.port];
      const out = await run(["ip", "-j", "-d", "link", "show", "type", "vlan"], o.netns);
      const links = (out.trim() ? JSON.parse(out) : []) as { ifname: string; link?: string; linkinfo?: { info_data?: { id?: number } } }[];
      return [o.port, ...links.filter((l) => l.link === o.port && l.linkinfo?.info_data?.id === o.vlan).map((l) => l.ifname)];
    },
    watch: (changed) => {
      let child: ChildProcess | undefined;
      let stopped = false;
      let restarts = 0;
      const start = () => {
        const [cmd, args] = o.netns ? ["nsenter", [`--net=${o.netns}`, "ip", fam, "monitor", "route"]] : ["ip", [fam, "monitor", "route"]];
        const c = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
        child = c;
        // the monitor never keeps the process alive by itself (stop() ends it at shutdown)
        c.unref();
        (c.stdout as unknown as { unref?: () => void }).unref?.();
        (c.stderr as unknown as { unref?: () => void }).unref?.();
        c.stdout!.on("data", () => changed());
        let spawnFailed = false;
        c.on("error", (e) => {
          // no `ip` (or no nsenter): routes are read once, at start, and not followed
          spawnFailed = true;
          o.log?.(`underlay: route monitor: ${e.message}; route changes will not be followed`);
        });
        c.on("exit", (code) => {
          if (stopped || spawnFailed) return;
          // a monitor that dies is started again (at most once a second), and the table re-read
          o.log?.(`underlay: route monitor exited (${code}); restarting`);
          if (restarts++ < 1000) setTimeout(() => { if (!stopped) { start(); changed(); } }, 1000).unref();
        });
      };
      start();
      return () => { stopped = true; child?.kill(); };
    },
  };
}

/**
 * `source` with its first dump and device list read now (issue 11: next-hop
 * resolution within 100 ms of start). `nvedge run` primes the kernel's routes
 * before its packet I/O workers start: reading them means running `ip`, and
 * forking a process that already holds the workers' data planes (hundreds of
 * MiB mapped) under load took 20–430 ms here, all of it before the first ARP
 * request. The resolver's first read takes the primed result, and it reads
 * the table again once its monitor runs (resolver.ts), so no change between
 * the priming and the monitor's start is missed.
 */
export function primeRoutes(source: RouteSource): RouteSource {
  let first: [Promise<KernelRoute[]>, Promise<string[]>] | undefined = [source.dump(), source.devs()];
  // a failed priming is reported by the read that takes it
  for (const p of first) p.catch(() => undefined);
  let dumpTaken = false, devsTaken = false;
  const done = () => { if (dumpTaken && devsTaken) first = undefined; };
  return {
    dump: () => { if (first && !dumpTaken) { dumpTaken = true; const p = first[0]; done(); return p; } return source.dump(); },
    devs: () => { if (first && !devsTaken) { devsTaken = true; const p = first[1]; done(); return p; } return source.devs(); },
    watch: (changed) => source.watch(changed),
  };
}
