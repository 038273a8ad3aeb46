// Topics and retained record shapes of PROTOCOL.md §6, apart from the request
// schemas (host/protocol/ima.ts) so that light clients (the `nvedge vn` CLI)
// load no ajv.
import { ROOT, IDENT } from "./topics.js";
import type { VnProfile } from "../domain/profile.js";

export const IMA_ROOT = `${ROOT}ima/`;

export const imaTopics = {
  /** requests of NVE / operator {who} */
  req: (who: string) => `${IMA_ROOT}req/${who}`,
  reqAll: `${IMA_ROOT}req/+`,
  rsp: (who: string) => `${IMA_ROOT}rsp/${who}`,
  vn: (id: number) => `${IMA_ROOT}vn/${id}`,
  vnAll: `${IMA_ROOT}vn/+`,
  vtep: (id: number, nve: string) => `${IMA_ROOT}vtep/${id}/${nve}`,
  vtepVn: (id: number) => `${IMA_ROOT}vtep/${id}/+`,
  bind: (id: number, mac: string) => `${IMA_ROOT}bind/${id}/${mac}`,
  bindVn: (id: number) => `${IMA_ROOT}bind/${id}/+`,
  /** a routing domain and its L3 VNI (L3 service) */
  l3domain: (id: number) => `${IMA_ROOT}l3domain/${id}`,
  l3domainAll: `${IMA_ROOT}l3domain/+`,
};

export type ImaTopic =
  | { kind: "req" | "rsp"; who: string }
  | { kind: "vn"; vn: number }
  | { kind: "vtep"; vn: number; nve: string }
  | { kind: "bind"; vn: number; mac: string }
  | { kind: "l3domain"; id: number };

const MAC_LEVEL = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Splits a topic of the nvo3/v1/ima/ tree, or null when it is not one of §6's. */
export function parseImaTopic(topic: string): ImaTopic | null {
  if (!topic.startsWith(IMA_ROOT)) return null;
  const p = topic.slice(IMA_ROOT.length).split("/");
  const vnOf = (s: string) => (/^[1-9][0-9]{0,7}$/.test(s) && Number(s) <= 16777215 ? Number(s) : undefined);
  if ((p[0] === "req" || p[0] === "rsp") && p.length === 2 && IDENT.test(p[1])) return { kind: p[0], who: p[1] };
  const vn = vnOf(p[1] ?? "");
  if (vn === undefined) return null;
  if (p[0] === "vn" && p.length === 2) return { kind: "vn", vn };
  if (p[0] === "l3domain" && p.length === 2) return { kind: "l3domain", id: vn };
  if (p[0] === "vtep" && p.length === 3 && IDENT.test(p[2])) return { kind: "vtep", vn, nve: p[2] };
  if (p[0] === "bind" && p.length === 3 && MAC_LEVEL.test(p[2])) return { kind: "bind", vn, mac: p[2] };
  return null;
}

/** The retained VN record, `nvo3/v1/ima/vn/{id}`. */
export interface VnRecord { id: number; name: string; alias?: string; vni: number; profile: VnProfile }
/** The retained flood-list entry, `nvo3/v1/ima/vtep/{id}/{nve}`; `routerMac`: the NVE's router MAC (L3 service). */
export interface VtepRecord { ip: string; routerMac?: string }
/** The retained routing domain, `nvo3/v1/ima/l3domain/{id}`: its L3 VNI. */
export interface L3DomainRecord { id: number; vni: number }
/**
 * The retained binding, `nvo3/v1/ima/bind/{id}/{mac}`: the NVE that has the MAC,
 * its underlay IP, the MAC's IPs and its mobility sequence number (RFC 7432 §15).
 * `duplicate` (an addition to §6's fields) is set while the MAC is frozen.
 * `next` (an addition too, issue 15 "hitless migration") names the NVE that
 * pre-associated the MAC (bind.prepare): the VM is about to move there, so the
 * holder's migration hold forwards the MAC's frames to it instead of dropping them.
 */
export interface BindRecord { nve: string; ip: string; ips: string[]; seq: number; duplicate?: boolean; next?: { nve: string; ip: string } }

