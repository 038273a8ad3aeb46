// The underlay's next hop, resolved by the NVE itself (issue 11;
// INTERFACES.md: "The next hop is underlay.gateway ... its MAC is resolved by
// ARP/ND. gatewayMac is an optional static override"). Glue between the data
// plane's punt path (ARP/ND for underlay.ip, host/io/worker.ts), the
// neighbour cache (neighbours.ts) and the tables: when the gateway's MAC is
// learned or changes, the underlay op is applied again with it, which
// rebuilds every tunnel's prebuilt outer header (host/dataplane/dataplane.ts).
import type { NveConfig } from "../config/types.js";
import type { DpOp } from "../dataplane/ops.js";
import { parseIp, ipText } from "../domain/addr.js";
import { NeighbourCache, type NeighbourEntry, type NeighbourCounters } from "./neighbours.js";
import { neighbourRequest, readNeighbourFrame } from "./frames.js";

export interface ResolverIo {
  onPunt(h: (port: string, frame: Uint8Array) => void): void;
  sendFrame(port: string, frame: Uint8Array): void;
}

export interface UnderlayResolver {
  cache: NeighbourCache;
  /** `nvedge show neighbours`: every entry, the counters, and which one is the next hop. */
  show(): { nextHop: string; neighbours: (NeighbourEntry & { ageMs: number })[]; counters: NeighbourCounters & { unreadable: number } };
  stop(): void;
}

/** Starts resolving underlay.gateway; undefined when there is nothing to resolve (gatewayMac given, or no gateway). */
export function startUnderlayResolver(o: {
  underlay: NveConfig["underlay"] & { gateway?: string };
  io: ResolverIo;
  apply: (ops: DpOp[]) => Promise<unknown>;
  log: (l: string) => void;
  now?: () => number;
  tickMs?: number;
}): UnderlayResolver | undefined {
  const u = o.underlay;
  if (u.gatewayMac || !u.gateway) return undefined;
  const gw = parseIp(u.gateway, false)!;
  const ours = parseIp(u.ip, false)!;
  if (gw.is6 !== ours.is6) throw new Error(`underlay.gateway ${u.gateway} is not of underlay.ip's family (${u.ip})`);
  const nextHop = ipText(gw.bytes, gw.is6);
  const now = o.now ?? (() => performance.now());
  let unreadable = 0;
  let first = true;
  const started = now();
  const cache = new NeighbourCache({
    now,
    send: (ip, to) => o.io.sendFrame(u.port, neighbourRequest(u.mac, u.ip, ip, to)),
    onChange: (ip, mac) => {
      if (ip !== nextHop) return;
      // A failed next hop keeps its last MAC in the tables: a frame to a
      // stale MAC may still arrive, one to broadcast never should (issue 11).
      if (!mac) { o.log(`underlay: next hop ${ip} stopped answering; keeping its last MAC while resolving again`); return; }
      o.log(`underlay: next hop ${ip} is at ${mac}${first ? ` (resolved ${Math.round(now() - started)} ms after start)` : ""}`);
      first = false;
      o.apply([{ op: "underlay", port: u.port, ip: u.ip, mac: u.mac, gatewayMac: mac, udpPort: u.udpPort, genevePort: u.genevePort }])
        .catch((e: Error) => o.log(`underlay: programming next hop ${ip} at ${mac} failed: ${e.message}`));
    },
  });
  o.io.onPunt((port, frame) => {
    if (port !== u.port) return;
    const r = readNeighbourFrame(frame);
    if (!r) { unreadable++; return; }
    cache.input(r.ip, r.mac, r.reply);
  });
  cache.want(nextHop);
  const timer = setInterval(() => cache.tick(), o.tickMs ?? 100);
  timer.unref();
  return {
    cache,
    show: () => {
      const t = now();
      return { nextHop, neighbours: cache.list().map((e) => ({ ...e, ageMs: Math.round(t - e.since) })), counters: { ...cache.counters, unreadable } };
    },
    stop: () => clearInterval(timer),
  };
}
