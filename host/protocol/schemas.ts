// JSON schemas (ajv) of every nvo3-hv/1 message: requests (PROTOCOL.md §2),
// responses and events (§4), statuses (§1). The NVE validates every request
// with them before touching state; the agent validates what the NVE sends.
// Patterns are shared with the configuration schema (host/config/schema.ts).
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { UUID } from "../config/schema.js";
import { isIpOrPrefix, isUnicastMac } from "../domain/addr-text.js";
import { profileSchema } from "../config/schema.js";

export const OPS = ["hello", "vn.connect", "vn.disconnect", "addr.associate", "addr.disassociate", "vnic.attach",
  "vnic.activate", "vnic.deactivate", "vn.profile", "sync", "show"] as const;
export type OpName = (typeof OPS)[number];

const uuid = { type: "string", pattern: UUID };
const reqId = { type: "string", minLength: 1, maxLength: 64 };
const vnId = { type: "integer", minimum: 1, maximum: 16777215 };
// A VN reference: exactly one of {name}, {id}, {alias}. The three branches
// exclude each other (each requires its own key and allows no other), so
// anyOf accepts exactly what oneOf did; but oneOf tries every branch, and the
// two that fail allocated ~0.7 KB of ajv error objects per valid request
// (issue 15: garbage per attach). anyOf stops at the first that holds: {id},
// the usual reference, first.
export const vnRefSchema = {
  anyOf: [
    { type: "object", additionalProperties: false, required: ["id"], properties: { id: vnId } },
    { type: "object", additionalProperties: false, required: ["name"], properties: { name: uuid } },
    { type: "object", additionalProperties: false, required: ["alias"], properties: { alias: { type: "string", minLength: 1, maxLength: 64 } } },
  ],
};
const tag = { type: "integer", minimum: 1, maximum: 4094 };
const mac = { type: "string", format: "mac" };
const ip = { type: "string", format: "ip" };
const addr = { type: "object", additionalProperties: false, required: ["mac"],
  properties: { mac, ips: { type: "array", maxItems: 4096, items: ip } } };
const addrs = { type: "array", minItems: 1, maxItems: 4096, items: addr };
const base = { id: reqId, op: { type: "string" } };

function req(required: string[], properties: Record<string, unknown>) {
  return { type: "object", additionalProperties: false, required: ["id", "op", ...required], properties: { ...base, ...properties } };
}

export const requestSchemas: Record<OpName, object> = {
  hello: req(["agent"], { agent: { type: "string", minLength: 1, maxLength: 256 },
    capabilities: { type: "array", maxItems: 64, items: { type: "string", maxLength: 64 } } }),
  "vn.connect": req(["vnic", "vn"], { vnic: uuid, vn: vnRefSchema, tag, activate: { type: "boolean" } }),
  "vn.disconnect": req(["vnic", "vn"], { vnic: uuid, vn: vnRefSchema }),
  "addr.associate": req(["vnic", "vn", "addrs"], { vnic: uuid, vn: vnRefSchema, addrs }),
  "addr.disassociate": req(["vnic", "vn", "addrs"], { vnic: uuid, vn: vnRefSchema, addrs }),
  "vnic.attach": req(["vnic", "vn", "addrs"], { vnic: uuid, vn: vnRefSchema, addrs, tag, migration: { type: "boolean" } }),
  "vnic.activate": req(["vnic"], { vnic: uuid, migration: { type: "boolean" } }),
  "vnic.deactivate": req(["vnic", "reason"], { vnic: uuid, reason: { enum: ["shutdown", "migration", "suspend"] } }),
  "vn.profile": req(["vn"], { vn: vnRefSchema }),
  sync: req(["syncId", "vnics", "final"], {
    syncId: uuid, final: { type: "boolean" },
    vnics: { type: "array", maxItems: 65536, items: { type: "object", additionalProperties: false, required: ["vnic", "state", "vns"],
      properties: { vnic: uuid, state: { enum: ["active", "associated"] },
        vns: { type: "array", maxItems: 64, items: { type: "object", additionalProperties: false, required: ["vn", "addrs"],
          properties: { vn: vnRefSchema, tag, addrs: { type: "array", maxItems: 4096, items: addr } } } } } } },
  }),
  // A page of the view (PROTOCOL.md §2 show): `cursor` is the `next` of the page before.
  show: req([], { cursor: uuid, limit: { type: "integer", minimum: 1, maximum: 65536 } }),
};

const vnFull = { type: "object", required: ["id"], properties: { id: vnId, name: uuid, alias: { type: "string" } } };
const errorBody = { type: "object", required: ["code", "message"], additionalProperties: false,
  properties: { code: { type: "string" }, message: { type: "string" }, field: { type: "string" } } };
export const responseSchema = {
  type: "object", required: ["id", "ok"],
  properties: { id: { anyOf: [reqId, { type: "null" }] }, ok: { type: "boolean" }, error: errorBody },
  if: { properties: { ok: { const: false } } }, then: { required: ["error"] },
};
export const eventSchemas: Record<string, object> = {
  "vn.disconnected": { type: "object", required: ["event", "vnic", "vn", "reason"], properties: { event: { const: "vn.disconnected" }, vnic: uuid, vn: vnFull, reason: { type: "string" } } },
  "addr.disassociated": { type: "object", required: ["event", "vnic", "vn", "addrs", "reason"], properties: { event: { const: "addr.disassociated" }, vnic: uuid, vn: vnFull, addrs: { type: "array", items: addr }, reason: { type: "string" } } },
  "vn.profile": { type: "object", required: ["event", "vn", "profile"], properties: { event: { const: "vn.profile" }, vn: vnFull, profile: profileSchema } },
  "nve.draining": { type: "object", required: ["event"], properties: { event: { const: "nve.draining" } } },
};
export const nveStatusSchema = { type: "object", required: ["state"], properties: {
  state: { enum: ["online", "offline"] }, bootId: uuid, protocol: { type: "integer" } } };

export const ajv = new Ajv({ allErrors: false, strict: false });
ajv.addFormat("mac", { type: "string", validate: isUnicastMac });
ajv.addFormat("ip", { type: "string", validate: isIpOrPrefix });

/**
 * name -> validator, each compiled on first use: compiling them all costs a
 * few hundred ms at import, on the restart path of `nvedge run` before the
 * data plane is programmed (issue 4). Keys enumerate as before.
 */
export function lazyValidators<K extends string>(schemas: Record<K, object>): Record<K, ValidateFunction> {
  const out = {} as Record<K, ValidateFunction>;
  for (const k of Object.keys(schemas) as K[])
    Object.defineProperty(out, k, {
      enumerable: true, configurable: true,
      get() {
        const v = ajv.compile(schemas[k]);
        Object.defineProperty(out, k, { value: v, enumerable: true });
        return v;
      },
    });
  return out;
}

export const validators = lazyValidators(requestSchemas as Record<OpName, object>);

/**
 * Compiles every request validator now. The NVE calls it once its data plane
 * is programmed and before it serves (NveService.start): a compile takes
 * 5 to 30 ms on the event loop, and on first use it landed on some
 * hypervisor's first request of an op, while every other hypervisor's request
 * (and, embedded, the broker) waited behind it (issue 10 soak: a flood's first
 * request of each op stalled a well-behaved hypervisor's hello).
 */
export function compileRequestValidators(): void {
  for (const op of OPS) void validators[op];
}

export const validateResponse = ajv.compile(responseSchema);
export const eventValidators = lazyValidators(eventSchemas);
export const validateNveStatus = ajv.compile(nveStatusSchema);

/**
 * The error to report of ajv's list: a failed VN reference (vnRefSchema's
 * anyOf) names the alternatives as a whole, so it wins over the errors inside
 * its branches; else the first.
 */
export function primaryAjvError(errs: ErrorObject[]): ErrorObject {
  return errs.find(isVnRefError) ?? errs[0];
}

/** A VN reference that is none of its alternatives (vnRefSchema), not the branches' own errors. */
const isVnRefError = (e: ErrorObject) => e.keyword === "anyOf" && e.schemaPath.endsWith("/vn/anyOf");

/** ajv's first error → a field path ("addrs[0].mac") and a message naming the value's fault. */
export function describeAjvError(e: ErrorObject): { field: string; message: string } {
  const parts = e.instancePath.split("/").slice(1);
  let field = parts.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("").replace(/^\./, "");
  let message = e.message ?? "invalid";
  if (e.keyword === "required") {
    const m = (e.params as { missingProperty: string }).missingProperty;
    field = field ? `${field}.${m}` : m;
    message = "is required";
  } else if (e.keyword === "additionalProperties") {
    const a = (e.params as { additionalProperty: string }).additionalProperty;
    field = field ? `${field}.${a}` : a;
    message = "unknown field";
  } else if (e.keyword === "format") {
    const f = (e.params as { format: string }).format;
    message = f === "mac" ? "not a unicast, non-zero MAC address (xx:xx:xx:xx:xx:xx)" : f === "ip" ? "not an IPv4/IPv6 address or prefix with zero host bits" : message;
  } else if (e.keyword === "pattern" && e.schemaPath.includes("name") === false && /vnic|syncId/.test(field)) {
    message = "not a lower-case RFC 4122 UUID";
  } else if (isVnRefError(e)) {
    message = 'must be exactly one of {"name": uuid}, {"id": 1..16777215}, {"alias": string}';
  } else if (e.keyword === "enum") {
    message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(", ")}`;
  }
  return { field, message };
}
