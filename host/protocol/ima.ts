// NVE ↔ IMA messages (PROTOCOL.md §6): topics, request schemas and decoding,
// and the retained record shapes. Requests and responses follow §2 (same id
// rules, same error body, same codes: host/protocol/errors.ts); the schemas
// share the formats (mac, ip, vn reference, profile) of host/protocol/schemas.ts.
import { isIP } from "node:net";
import { ProtocolError } from "./errors.js";
import { decodeEnvelope } from "./codec.js";
import { ajv, describeAjvError, lazyValidators, primaryAjvError, vnRefSchema } from "./schemas.js";
import { profileSchema, UUID } from "../config/schema.js";
import type { VnRef } from "./types.js";
import type { VnProfile } from "../domain/profile.js";
import type { IClientOptions } from "mqtt";
import { mqttClientOptions, type BrokerConnection } from "./mqtt.js";

export * from "./ima-topics.js";

/** The IMA and its NVE clients keep persistent sessions (`clean: false`): requests sent while the IMA restarts are answered when it is back. */
export function imaMqttOptions(b: BrokerConnection, clientId: string, clean: boolean): IClientOptions {
  return mqttClientOptions(b, clientId, { clean });
}

export const IMA_NVE_OPS = ["vn.resolve", "vtep.join", "vtep.leave", "bind.announce", "bind.withdraw", "bind.prepare"] as const;
export const IMA_OPERATOR_OPS = ["vn.create", "vn.delete", "vn.set-profile", "vn.list", "mac.frozen", "mac.unfreeze",
  "l3domain.create", "l3domain.delete", "l3domain.list"] as const;
export const IMA_OPS = [...IMA_NVE_OPS, ...IMA_OPERATOR_OPS] as const;
export type ImaOpName = (typeof IMA_OPS)[number];

export type ImaRequest =
  | { id: string; op: "vn.resolve"; vn: VnRef }
  | { id: string; op: "vtep.join"; vn: VnRef; ip: string; routerMac?: string }
  | { id: string; op: "vtep.leave"; vn: VnRef; ip?: string }
  /** `seq` is accepted for older NVEs and ignored: the IMA assigns sequence numbers (§6) */
  | { id: string; op: "bind.announce"; vn: VnRef; mac: string; ips?: string[]; seq?: number }
  | { id: string; op: "bind.withdraw"; vn: VnRef; mac: string }
  /** the NVE pre-associated the MAC (vn.connect activate:false): it is the MAC's next holder (issue 15) */
  | { id: string; op: "bind.prepare"; vn: VnRef; mac: string }
  | { id: string; op: "vn.create"; vn?: { id?: number; name?: string; alias?: string }; alias?: string; name?: string; vni?: number; profile?: VnProfile }
  | { id: string; op: "vn.delete"; vn: VnRef }
  | { id: string; op: "vn.set-profile"; vn: VnRef; profile: VnProfile }
  | { id: string; op: "vn.list" }
  | { id: string; op: "mac.frozen"; vn?: VnRef }
  | { id: string; op: "mac.unfreeze"; vn: VnRef; mac: string }
  /** a routing domain: `l3domain` its id (the top-level `id` is the request's, §2), `vni` its L3 VNI */
  | { id: string; op: "l3domain.create"; l3domain: number; vni: number }
  | { id: string; op: "l3domain.delete"; l3domain: number }
  | { id: string; op: "l3domain.list" };

const reqId = { type: "string", minLength: 1, maxLength: 64 };
const vnId = { type: "integer", minimum: 1, maximum: 16777215 };
const mac = { type: "string", format: "mac" };
/** An underlay address: a plain IPv4/IPv6 address, no prefix. */
const hostIp = { type: "string", format: "host-ip" };
const seq = { type: "integer", minimum: 0, maximum: 4294967295 }; // RFC 7432 §7.7: 32-bit sequence number
const base = { id: reqId, op: { type: "string" } };
function req(required: string[], properties: Record<string, unknown>) {
  return { type: "object", additionalProperties: false, required: ["id", "op", ...required], properties: { ...base, ...properties } };
}

ajv.addFormat("host-ip", { type: "string", validate: (s: string) => isIP(s) !== 0 && !s.includes("%") });

/**
 * PROTOCOL.md §6 gives vn.create the fields alias, id, vni, name and profile;
 * a top-level `id` is already the request id (§2), so the VN's id travels in
 * `vn` — `{"op":"vn.create","vn":{"id":100,"alias":"blue"},"vni":5000}` — and
 * `alias`/`name` are accepted either there or at the top level.
 */
export const imaRequestSchemas: Record<ImaOpName, object> = {
  "vn.resolve": req(["vn"], { vn: vnRefSchema }),
  "vtep.join": req(["vn", "ip"], { vn: vnRefSchema, ip: hostIp, routerMac: mac }),
  "vtep.leave": req(["vn"], { vn: vnRefSchema, ip: hostIp }),
  "bind.announce": req(["vn", "mac"], { vn: vnRefSchema, mac, ips: { type: "array", maxItems: 4096, items: { type: "string", format: "ip" } }, seq }),
  "bind.withdraw": req(["vn", "mac"], { vn: vnRefSchema, mac }),
  "bind.prepare": req(["vn", "mac"], { vn: vnRefSchema, mac }),
  "vn.create": req([], {
    vn: { type: "object", additionalProperties: false, minProperties: 1, properties: {
      id: vnId, name: { type: "string", pattern: UUID }, alias: { type: "string", minLength: 1, maxLength: 64 } } },
    alias: { type: "string", minLength: 1, maxLength: 64 }, name: { type: "string", pattern: UUID },
    vni: vnId, profile: profileSchema,
  }),
  "vn.delete": req(["vn"], { vn: vnRefSchema }),
  "vn.set-profile": req(["vn", "profile"], { vn: vnRefSchema, profile: profileSchema }),
  "vn.list": req([], {}),
  "mac.frozen": req([], { vn: vnRefSchema }),
  "mac.unfreeze": req(["vn", "mac"], { vn: vnRefSchema, mac }),
  "l3domain.create": req(["l3domain", "vni"], { l3domain: vnId, vni: vnId }),
  "l3domain.delete": req(["l3domain"], { l3domain: vnId }),
  "l3domain.list": req([], {}),
};

// each compiled on first use (./schemas.ts lazyValidators): all of them cost about 0.3 s at import, in every
// process that imports this module (`nvedge run`, its IMA client), whether it decodes an IMA request or not
const validators = lazyValidators(imaRequestSchemas);
const OP_SET = new Set<string>(IMA_OPS);

export type ImaDecoded = { ok: true; req: Record<string, any> & { id: string; op: ImaOpName } } | { ok: false; id: string | null; error: ProtocolError };

/** Decodes one IMA request (§2 rules): never throws. */
export function decodeImaRequest(payload: Uint8Array, maxPayload: number): ImaDecoded {
  const env = decodeEnvelope(payload, maxPayload, OP_SET, (op) => `unknown op "${op}" (the IMA serves ${IMA_OPS.join(", ")})`);
  if (!env.ok) return env;
  const { id, msg: o } = env;
  const v = validators[o.op as ImaOpName];
  // Profiles are validated on a copy by the IMA (defaults filled there), so the
  // schema check here must not mutate; ajv is compiled without useDefaults.
  if (!v(o)) {
    const e = primaryAjvError(v.errors!);
    const d = describeAjvError(e);
    if (e.keyword === "format" && (e.params as { format: string }).format === "host-ip") d.message = "not an IPv4 or IPv6 address";
    return { ok: false, id, error: new ProtocolError("bad-request", `${d.field || "request"}: ${d.message}`, d.field || undefined) };
  }
  return { ok: true, req: o as ImaDecoded extends { ok: true; req: infer R } ? R : never };
}
