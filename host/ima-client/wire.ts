// Wires the IMA client (client.ts) into a running NVE (host/control NveCore),
// issue 6 "The NVE side": started after the NVE restored its store and connected
// (NveService.start), on the NVE's own MQTT connection; stopped before it.
//   - desired state at start: the VNs served and the local bindings restored;
//   - after every commit NveCore tells it what changed (NveCore.ima, core.ts toIma);
//   - VN references the config lacks are resolved through it (core.ts resolveRefs);
//   - what the IMA publishes is programmed and cached in the store (cache-writer.ts);
//   - a binding that moved to another NVE is de-associated here and the agent
//     told (addr.disassociated, reason `moved`; RFC 7432 §15), a profile change
//     reaches the agents (vn.profile, seed §4.5), a deleted VN is removed.
import type { MqttLike } from "../protocol/mqtt-lean.js";
import type { NveConfig, VnConfig } from "../config/types.js";
import type { DataPlaneProgrammer, DpOp } from "../dataplane/ops.js";
import type { VnProfile } from "../domain/profile.js";
import type { VnRef } from "../protocol/types.js";
import type { Store } from "../store/store.js";
import { routerMacOf } from "../config/l3.js";
import { ImaClient, type LocalChange } from "./client.js";
import { ImaCacheWriter } from "./cache-writer.js";
import { localBindingsOf, localChangesFor, servedVnsOf, type ModelView } from "./glue.js";

/**
 * The NVE's side of the mapping authority (client.ts ImaClient, PROTOCOL.md
 * §6), told by the NVE (host/control NveCore) after every committed change:
 * the VNs served (flood lists) and the local bindings touched
 * (announce/withdraw, seed §4.3).
 */
export interface ImaLink {
  setServed(vns: Iterable<number>): Promise<void>;
  applyLocal(changes: LocalChange[]): void;
  /** A commit's data-plane ops with the MAC entries the client re-points already re-pointed (ImaClient.overlay, issue 15). */
  overlay?(ops: DpOp[]): DpOp[];
  resolve(ref: VnRef): Promise<VnConfig>;
  /** Bindings the IMA publishes at other NVEs (for `nvedge show bindings`). */
  remoteBindings?(): { vn: number; mac: string; ips: string[]; nve: string; ip: string; seq: number }[];
}

/**
 * What the client needs of the running NVE (host/control NveCore, which is
 * one): described here so this layer does not import the control plane above it.
 */
export interface NveSide {
  readonly model: ModelView;
  readonly catalog: { get(id: number): VnConfig | undefined };
  ima: ImaLink | undefined;
  disassociate(vnic: string, vn: number, addrs: { mac: string }[], reason: string): Promise<void>;
  setProfile(vn: number, profile: VnProfile): Promise<void>;
  removeVn(vn: number, reason: string): Promise<number>;
}

export interface NveImaOptions {
  config: NveConfig;
  core: NveSide;
  client: MqttLike;
  programmer: DataPlaneProgrammer;
  store: Store;
  log: (line: string) => void;
  timeoutMs?: number;
}

export async function startNveIma(o: NveImaOptions): Promise<{ client: ImaClient; stop(): Promise<void> }> {
  const { core, log } = o;
  const served0 = servedVnsOf(core.model), local0 = localBindingsOf(core.model);
  const cache = new ImaCacheWriter(o.store, new Set(o.config.vns.map((v) => v.id)), log);
  const ima = await ImaClient.start({
    nve: o.config.nve, ip: o.config.underlay.ip, client: o.client, programmer: cache.wrap(o.programmer),
    served: served0, local: local0, routerMac: routerMacOf(o.config),
    current: (id) => core.catalog.get(id),
    onMoved: (vn, mac, by) => {
      const owner = core.model.macOwner.get(`${vn}|${mac}`);
      if (!owner) return;
      log(`ima: MAC ${mac} in VN ${vn} moved to ${by?.nve ?? "another NVE"}: de-associated from VNIC ${owner}`);
      core.disassociate(owner, vn, [{ mac }], "moved").catch((e) => log(`ima: de-associating moved ${mac}: ${(e as Error).message}`));
    },
    onProfile: (rec) => {
      if (core.catalog.get(rec.id)) core.setProfile(rec.id, rec.profile).catch((e) => log(`ima: VN ${rec.id} profile: ${(e as Error).message}`));
    },
    onVnDeleted: (vn) => {
      if (core.catalog.get(vn)) core.removeVn(vn, "vn-deleted").catch((e) => log(`ima: VN ${vn} deleted: ${(e as Error).message}`));
      cache.vnDeleted(vn).catch((e) => log(`ima cache: ${(e as Error).message}`));
    },
    onDuplicate: (vn, mac, msg) => log(`ALERT duplicate MAC ${mac} in VN ${vn} (RFC 7432 §15): ${msg}`),
    timeoutMs: o.timeoutMs,
    log,
  });
  cache.client = ima;
  core.ima = {
    setServed: (vns) => ima.setServed(vns),
    applyLocal: (changes) => ima.applyLocal(changes),
    overlay: (ops) => ima.overlay(ops),
    resolve: (ref) => ima.resolve(ref),
    remoteBindings: () => [...ima.records].filter(([, r]) => r.nve !== ima.nve).map(([k, r]) => {
      const i = k.indexOf("|");
      return { vn: Number(k.slice(0, i)), mac: k.slice(i + 1), ips: [...r.ips], nve: r.nve, ip: r.ip, seq: r.seq };
    }),
  };
  // Changes committed while the client subscribed: catch up (the client ignores what did not change).
  void ima.setServed(servedVnsOf(core.model)).catch((e) => log(`ima: flood lists: ${(e as Error).message}`));
  const keys = new Set([...local0.map((b) => `${b.vn}|${b.mac}`), ...core.model.macOwner.keys()]);
  ima.applyLocal(localChangesFor(keys, core.model).filter((c) => "gone" in c || !local0.some((b) => b.vn === c.vn && b.mac === c.mac && b.active === c.active && b.port === c.port && b.ips.join() === c.ips.join())));
  log(`ima: client started (${servedVnsOf(core.model).size} VNs served, ${localBindingsOf(core.model).length} local bindings)`);
  return {
    client: ima,
    async stop() {
      core.ima = undefined;
      await ima.stop();
      await cache.close();
    },
  };
}
