// The IMA's configuration file (INTERFACES.md `nvedge ima run`): its identity
// `ima`, `broker`, `auth`, `operators` and `vns` (seeded into the catalog when
// the store is new), plus the RFC 7432 §15 duplicate-detection numbers.
// JSON, or YAML when the name ends in .yaml/.yml; every error names the key.
import { parse as parseYaml } from "yaml";
import { Ajv, type ValidateFunction } from "ajv";
import { ConfigError, readConfigText } from "../config/load.js";
import { ID, UUID, profileSchema } from "../config/schema.js";
import { isUnicastIp, normIp } from "../domain/addr-text.js";
import type { VnSeed } from "./core.js";
import { BROKER_URL_PATTERN } from "../domain/broker-url.js";

export interface ImaConfig {
  ima: string;
  broker?: string;
  auth?: { username?: string; password?: string; passwordFile?: string; aclFile?: string; tls?: { cert: string; key: string; ca: string } };
  operators: string[];
  /** the NVEs this IMA accepts, each with the one underlay IP it may use (PROTOCOL.md §6) */
  nves: { id: string; ip: string }[];
  vns: VnSeed[];
  /** routing domains and their L3 VNIs (L3 service), seeded with `vns` into a new store */
  l3domains: { id: number; vni: number }[];
  duplicate: { moves: number; windowMs: number };
  limits: { maxPayload: number };
  /** how long an NVE may stay offline before its flood-list entries and bindings are withdrawn (0 = never) */
  nveHoldMs: number;
  /** logging (issue 13): --log-level / --log-format win; the level is re-read on SIGHUP */
  log?: { level?: string; format?: string };
  /**
   * High availability (issue 15, host/ima/ha.ts): this process is one instance
   * of the IMA `ima`; the instances elect the active one through the broker.
   */
  ha?: { instance: string; priority: number; holdMs: number };
}

const vnId = { type: "integer", minimum: 1, maximum: 16777215 };
export const imaConfigSchema = {
  type: "object", additionalProperties: false,
  properties: {
    ima: { type: "string", pattern: ID, default: "ima" },
    broker: { type: "string", pattern: BROKER_URL_PATTERN },
    auth: { type: "object", additionalProperties: false, properties: {
      username: { type: "string", pattern: ID }, password: { type: "string" },
      // the broker's files (INTERFACES.md auth), accepted so one file can serve both
      passwordFile: { type: "string" }, aclFile: { type: "string" },
      tls: { type: "object", additionalProperties: false, required: ["cert", "key", "ca"],
        properties: { cert: { type: "string" }, key: { type: "string" }, ca: { type: "string" } } } } },
    operators: { type: "array", default: [], items: { type: "string", pattern: ID } },
    nves: { type: "array", default: [], items: { type: "object", additionalProperties: false, required: ["id", "ip"],
      properties: { id: { type: "string", pattern: ID }, ip: { type: "string" } } } },
    vns: { type: "array", default: [], items: { type: "object", additionalProperties: false,
      properties: { id: vnId, name: { type: "string", pattern: UUID }, alias: { type: "string", minLength: 1, maxLength: 64 }, vni: vnId, profile: profileSchema } } },
    l3domains: { type: "array", default: [], maxItems: 1024, items: { type: "object", additionalProperties: false, required: ["id", "vni"],
      properties: { id: vnId, vni: vnId } } },
    duplicate: { type: "object", additionalProperties: false, default: {}, properties: {
      moves: { type: "integer", minimum: 1, default: 5 }, windowMs: { type: "integer", minimum: 1, default: 180000 } } },
    nveHoldMs: { type: "integer", minimum: 0, default: 0 },
    limits: { type: "object", additionalProperties: false, default: {}, properties: { maxPayload: { type: "integer", minimum: 1024, default: 262144 } } },
    ha: { type: "object", additionalProperties: false, required: ["instance"], properties: {
      instance: { type: "string", pattern: ID }, priority: { type: "integer", default: 0 },
      holdMs: { type: "integer", minimum: 1000, default: 10000 } } },
    // As the NVE's file (host/config/schema.ts `log`).
    log: { type: "object", additionalProperties: false, properties: {
      level: { enum: ["fatal", "error", "warn", "info", "debug", "trace", "silent"] }, format: { enum: ["json", "text"] } } },
  },
} as const;

// Compiled on first use, not at import (about 0.2 s of CPU at every start of a process that imports it).
let compiled: ValidateFunction | undefined;

export function parseImaConfig(text: string, file: string): ImaConfig {
  let raw: unknown;
  const yaml = /\.ya?ml$/i.test(file);
  try {
    raw = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, "", `not valid ${yaml ? "YAML" : "JSON"}: ${(e as Error).message}`);
  }
  const validate = (compiled ??= new Ajv({ allErrors: false, useDefaults: true, strict: false }).compile(imaConfigSchema));
  if (!validate(raw)) {
    const err = validate.errors![0];
    const key = err.instancePath.replace(/^\//, "").replace(/\//g, ".") || "(top level)";
    const detail = err.keyword === "additionalProperties"
      ? `unknown key "${(err.params as { additionalProperty: string }).additionalProperty}"`
      : err.keyword === "enum" ? `${err.message} (${(err.params as { allowedValues: unknown[] }).allowedValues.join(", ")})` : err.message;
    throw new ConfigError(file, key, detail ?? "invalid");
  }
  const cfg = raw as ImaConfig;
  // PROTOCOL.md §6: each listed NVE has one underlay IP, a unicast host address.
  const seen = new Map<string, number>();
  cfg.nves.forEach((n, i) => {
    if (!isUnicastIp(n.ip)) throw new ConfigError(file, `nves.${i}.ip`, `${JSON.stringify(n.ip)} is not a unicast IPv4 or IPv6 address (not 0.0.0.0, loopback, multicast or broadcast)`);
    if (seen.has(n.id)) throw new ConfigError(file, `nves.${i}.id`, `NVE ${JSON.stringify(n.id)} is listed twice (also nves.${seen.get(n.id)})`);
    seen.set(n.id, i);
    n.ip = normIp(n.ip);
  });
  return cfg;
}

/** No file: the defaults (identity `ima`, no operators, no VNs). */
export function loadImaConfig(file: string | undefined): ImaConfig {
  if (file === undefined) return parseImaConfig("{}", "(defaults)");
  return parseImaConfig(readConfigText(file), file);
}
