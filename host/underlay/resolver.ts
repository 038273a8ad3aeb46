// The underlay's next hops, found and resolved by the NVE itself (issue 11;
// INTERFACES.md: "The next hop is underlay.gateway (an IP) or, when absent,
// taken from the kernel's routing table in the NVE's namespace; its MAC is
// resolved by ARP/ND. gatewayMac is an optional static override"). Glue
// between the routes (routes.ts), the data plane's punt path (ARP/ND for
// underlay.ip, host/io/worker.ts), the neighbour cache (neighbours.ts) and
// the tables:
//   - every remote NVE the tables name is looked up: with underlay.gateway,
//     through the gateway unless a kernel route without a gateway puts it on
//     the uplink's own subnet; without it, in the kernel's routes out of the
//     uplink (longest prefix, metric; multipath = ECMP);
//   - each next hop's MAC is resolved by ARP / NS (the remote's own when it is
//     on the link, "same subnet"), and the remote gets the "nexthop" op with
//     the MACs it has (all of an ECMP set that are resolved; none = nothing is
//     sent to it, never broadcast), again whenever a route or a MAC changes;
//   - with underlay.gateway, the underlay op carries the gateway's MAC too, so
//     a remote that appears is served at once, before its own lookup lands.
import type { NveConfig } from "../config/types.js";
import type { DpOp } from "../dataplane/ops.js";
import { parseIp, ipText } from "../domain/addr.js";
import { NeighbourCache, type NeighbourEntry, type NeighbourCounters } from "./neighbours.js";
import { neighbourRequest, readNeighbourFrame } from "./frames.js";
import { routeLookup, kernelRoutes, type KernelRoute, type RouteSource, type RouteResult } from "./routes.js";

export interface ResolverIo {
  onPunt(h: (port: string, frame: Uint8Array) => void): void;
  sendFrame(port: string, frame: Uint8Array): void;
}

/** One remote NVE's route as `nvedge show neighbours` prints it. */
export interface RemoteRoute { nve: string; via: string | null; onLink: boolean; hops: string[]; macs: string[] }

export interface UnderlayResolver {
  cache: NeighbourCache;
  /** Remote NVEs the tables name (from the ops applied, run.ts): looked up and resolved from now on. */
  addRemotes(ips: Iterable<string>): void;
  /** `nvedge show neighbours`: every entry, the counters, the gateway (if any) and each remote's route. */
  show(): {
    mode: "gateway" | "routes"; nextHop: string | null; neighbours: (NeighbourEntry & { ageMs: number })[];
    counters: NeighbourCounters & { unreadable: number; routeReads: number }; remotes: RemoteRoute[];
  };
  /** Settles once the routes were read the first time and every remote known then was looked up. */
  ready: Promise<void>;
  /**
   * Settles once every next hop wanted now is resolved (or failed) and its
   * nexthop op applied, or after `boundMs`: run.ts waits on it before the
   * control plane's own start-up work, so that the main thread is free while
   * the first ARP / NS answers come in (issue 11 aim: the first tunnel frame
   * within 100 ms of the data plane being programmed).
   */
  settled(boundMs: number): Promise<void>;
  stop(): void;
}

/** The remote NVE addresses an op list names (the ones that get tunnels or flood copies). */
export function remotesOf(ops: DpOp[]): string[] {
  const out: string[] = [];
  for (const op of ops) if (op.op === "mac.remote" || op.op === "flood.join") out.push(op.nve);
  return out;
}

/** Starts resolving the underlay's next hops; undefined when gatewayMac fixes the one next hop. */
export function startUnderlayResolver(o: {
  underlay: NveConfig["underlay"] & { gateway?: string; vlan?: number };
  io: ResolverIo;
  apply: (ops: DpOp[]) => Promise<unknown>;
  log: (l: string) => void;
  now?: () => number;
  tickMs?: number;
  /** Where routes come from: default the kernel's (routes.ts kernelRoutes) in `netns` or this process's namespace. */
  routes?: RouteSource;
  netns?: string;
  remotes?: Iterable<string>;
}): UnderlayResolver | undefined {
  const u = o.underlay;
  if (u.gatewayMac) return undefined;
  const ours = parseIp(u.ip, false)!;
  let gateway: string | null = null;
  if (u.gateway) {
    const gw = parseIp(u.gateway, false)!;
    if (gw.is6 !== ours.is6) throw new Error(`underlay.gateway ${u.gateway} is not of underlay.ip's family (${u.ip})`);
    gateway = ipText(gw.bytes, gw.is6);
  }
  const now = o.now ?? (() => performance.now());
  const source = o.routes ?? kernelRoutes({ is6: ours.is6, port: u.port, vlan: u.vlan, netns: o.netns, log: o.log });
  let unreadable = 0, routeReads = 0;
  const started = now();
  const learnedOnce = new Set<string>();
  // the last MAC each next hop had: a failed one keeps it in the tables (a
  // frame to a stale MAC may still arrive, one to broadcast never should)
  const lastMac = new Map<string, string>();
  const remotes = new Set<string>();
  const routeOf = new Map<string, RemoteRoute>();
  let table: KernelRoute[] = [];
  let devs = new Set([u.port]);
  let stopped = false;

  const cache = new NeighbourCache({
    now,
    send: (ip, to) => o.io.sendFrame(u.port, neighbourRequest(u.mac, u.ip, ip, to)),
    onChange: (ip, mac) => {
      if (!mac) { o.log(`underlay: next hop ${ip} stopped answering; keeping its last MAC while resolving again`); return; }
      lastMac.set(ip, mac);
      o.log(`underlay: next hop ${ip} is at ${mac}${learnedOnce.has(ip) ? "" : ` (resolved ${Math.round(now() - started)} ms after start)`}`);
      learnedOnce.add(ip);
      if (ip === gateway) {
        o.apply([{ op: "underlay", port: u.port, ip: u.ip, mac: u.mac, gatewayMac: mac, udpPort: u.udpPort, genevePort: u.genevePort }])
          .catch((e: Error) => o.log(`underlay: programming next hop ${ip} at ${mac} failed: ${e.message}`));
      }
      schedule();
    },
  });

  const lookup = (r: string): RouteResult => {
    if (gateway === null) return routeLookup(table, r, devs);
    // underlay.gateway: every remote through it, but one on the uplink's own subnet directly
    const direct = routeLookup(table.filter((x) => x.gateway === undefined && !x.nexthops && x.dst !== "default"), r, devs);
    return direct.onLink ? direct : { hops: [gateway], onLink: false, via: "underlay.gateway" };
  };

  /** Looks every remote up again and programs those whose next-hop MACs changed (one apply). */
  const recompute = () => {
    if (stopped) return;
    const ops: DpOp[] = [];
    const inUse = new Set<string>(gateway ? [gateway] : []);
    for (const r of remotes) {
      const res = lookup(r);
      for (const h of res.hops) { inUse.add(h); cache.want(h); }
      const macs = res.hops.map((h) => cache.mac(h) ?? lastMac.get(h)).filter((m): m is string => m !== undefined);
      const prev = routeOf.get(r);
      routeOf.set(r, { nve: r, via: res.via, onLink: res.onLink, hops: res.hops, macs });
      if (prev && prev.macs.join() === macs.join()) continue;
      if (prev?.via !== res.via || prev?.hops.join() !== res.hops.join())
        o.log(`underlay: remote ${r}: ${res.via === null ? "no route out of the uplink" : `route ${res.via}, next hop${res.hops.length > 1 ? "s (ECMP)" : ""} ${res.hops.join(", ") || "none"}${res.onLink ? " (on the link)" : ""}`}`);
      ops.push({ op: "nexthop", nve: r, macs });
    }
    for (const e of cache.list()) if (!inUse.has(e.ip)) { cache.forget(e.ip); lastMac.delete(e.ip); }
    if (ops.length) {
      applying++;
      o.apply(ops).catch((e: Error) => o.log(`underlay: programming next hops failed: ${e.message}`)).finally(() => { applying--; });
    }
  };
  let applying = 0;
  /** The remotes not yet known, of the underlay's family and not ourselves; true if any was new. */
  function addRemotes(ips: Iterable<string>): boolean {
    let added = false;
    for (const ip of ips) {
      const p = parseIp(ip, false);
      if (!p || p.is6 !== ours.is6 || p.text === ours.text || remotes.has(p.text)) continue;
      remotes.add(p.text);
      added = true;
    }
    return added;
  }
  let pending = false;
  function schedule(): void {
    if (pending) return;
    pending = true;
    queueMicrotask(() => { pending = false; recompute(); });
  }

  let reading: Promise<void> | undefined, again = false;
  const reread = (): Promise<void> => {
    if (reading) { again = true; return reading; }
    reading = (async () => {
      do {
        again = false;
        try {
          const [t, d] = await Promise.all([source.dump(), source.devs()]);
          table = t;
          devs = new Set(d);
          routeReads++;
        } catch (e) {
          o.log(`underlay: reading the routes failed: ${(e as Error).message}${gateway ? " (remotes go through underlay.gateway)" : ""}`);
        }
        recompute();
      } while (again && !stopped);
    })().finally(() => { reading = undefined; });
    return reading;
  };

  o.io.onPunt((port, frame) => {
    if (port !== u.port) return;
    const r = readNeighbourFrame(frame);
    if (!r) { unreadable++; return; }
    cache.input(r.ip, r.mac, r.reply);
  });
  o.log(`underlay: resolving next hops (${gateway ? `underlay.gateway ${gateway}` : "kernel routes"})`);
  if (gateway) cache.want(gateway);
  addRemotes(o.remotes ?? []);
  const ready = reread();
  /** Every next hop wanted now resolved (or failed) and programmed, or `boundMs` passed. */
  const settle = async (boundMs: number) => {
    const end = performance.now() + boundMs; // real time, whatever clock the cache runs on
    await Promise.race([ready, new Promise((r) => setTimeout(r, boundMs).unref())]);
    // polled: cheap, and only until the first answers are in (bounded)
    while (!stopped && performance.now() < end && (reading !== undefined || pending || applying > 0 || cache.list().some((e) => e.state === "incomplete")))
      await new Promise((r) => setTimeout(r, 2));
  };
  // The route monitor starts once the first answers are in: spawning `ip`
  // forks this process, which blocks its main thread for as long as copying
  // its page tables takes (tens of ms under load, with the workers' data
  // planes mapped), and the first ARP / NS answers wait for that thread. A
  // change before it runs is caught by one more read as it starts.
  // A burst of route events (a link going down takes many routes) is read once.
  let debounce: ReturnType<typeof setTimeout> | undefined;
  let stopWatch = () => {};
  void settle(250).then(() => {
    if (stopped) return;
    stopWatch = source.watch(() => {
      if (debounce) return;
      debounce = setTimeout(() => { debounce = undefined; void reread(); }, 20);
      debounce.unref();
    });
    void reread();
  });
  const timer = setInterval(() => cache.tick(), o.tickMs ?? 100);
  timer.unref();
  return {
    cache,
    ready,
    addRemotes: (ips) => { if (addRemotes(ips)) schedule(); },
    settled: settle,
    show: () => {
      const t = now();
      return {
        mode: gateway ? "gateway" : "routes", nextHop: gateway,
        neighbours: cache.list().map((e) => ({ ...e, ageMs: Math.round(t - e.since) })),
        counters: { ...cache.counters, unreadable, routeReads },
        remotes: [...routeOf.values()].map((r) => ({ ...r, hops: [...r.hops], macs: [...r.macs] })),
      };
    },
    stop: () => { stopped = true; clearInterval(timer); if (debounce) clearTimeout(debounce); stopWatch(); },
  };
}
