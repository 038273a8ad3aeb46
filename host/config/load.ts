// Loads and validates the configuration file of INTERFACES.md (JSON, or YAML
// when the name ends in .yaml/.yml). Every error names the file and the key at
// fault; the CLI turns a ConfigError into exit code 2.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { Ajv, type ValidateFunction } from "ajv";
import { configSchema } from "./schema.js";
import type { NveConfig } from "./types.js";
import { checkConfig, dottedKey } from "./check.js";

// in its own module, so the CLI's dispatcher (host/cli/main.ts) tells it apart without loading ajv and yaml
export { ConfigError } from "./error.js";
import { ConfigError } from "./error.js";

// Compiled on first use, not at import: every `nvedge` command imports this
// module (ConfigError), and the compile costs about 0.2 s of CPU at each start.
let compiled: ValidateFunction | undefined;
const schemaCheck = () => (compiled ??= new Ajv({ allErrors: false, useDefaults: true, strict: false }).compile(configSchema));

export function parseConfig(text: string, file: string): NveConfig {
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, "", `not valid ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${(e as Error).message}`);
  }
  const validate = schemaCheck();
  if (!validate(raw)) {
    const err = validate.errors![0];
    const key = err.instancePath.replace(/^\//, "").replace(/\//g, ".") || "(top level)";
    const detail = err.keyword === "additionalProperties"
      ? `unknown key "${(err.params as { additionalProperty: string }).additionalProperty}"`
      : err.keyword === "enum"
        ? `${err.message} (${(err.params as { allowedValues: unknown[] }).allowedValues.join(", ")})`
        : err.message;
    throw new ConfigError(file, key, detail ?? "invalid");
  }
  const cfg = raw as NveConfig;
  crossCheck(cfg, file);
  // The rules of `nvedge config check` (duplicate/conflicting remotes, MACs, tags): the first one refuses the file.
  const problem = checkConfig(cfg)[0];
  if (problem) throw new ConfigError(file, dottedKey(problem.path), problem.message);
  return cfg;
}

export function loadConfig(file: string): NveConfig {
  return parseConfig(readConfigText(file), file);
}

/** A configuration file's text, or a ConfigError naming it and why it cannot be read. */
export function readConfigText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, "", `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Rules a JSON schema cannot say: references between sections resolve, names are unique. */
function crossCheck(cfg: NveConfig, file: string): void {
  const ports = new Set<string>();
  cfg.ports.forEach((p, i) => {
    if (p.name === cfg.underlay.port) throw new ConfigError(file, `ports.${i}.name`, `"${p.name}" is the underlay port`);
    if (ports.has(p.name)) throw new ConfigError(file, `ports.${i}.name`, `duplicate port "${p.name}"`);
    ports.add(p.name);
  });
  // An {hv} on two ports is refused by checkConfig (config/check.ts), after these.
  const vnIds = new Set<number>();
  const vnis = new Set<number>();
  const names = new Map<string, number>();
  cfg.vns.forEach((v, i) => {
    if (vnIds.has(v.id)) throw new ConfigError(file, `vns.${i}.id`, `duplicate VN id ${v.id}`);
    if (vnis.has(v.vni)) throw new ConfigError(file, `vns.${i}.vni`, `duplicate VNI ${v.vni}`);
    if (v.profile.encap === "nvgre" && (v.vni <= 0xfff || v.vni === 0xffffff))
      throw new ConfigError(file, `vns.${i}.vni`, `VSID ${v.vni} is reserved for NVGRE (RFC 7637 §3.2: 0-0xFFF and 0xFFFFFF)`);
    for (const n of [v.name, v.alias]) {
      if (n === undefined) continue;
      if (names.has(n)) throw new ConfigError(file, `vns.${i}`, `name or alias "${n}" already used by VN ${names.get(n)}`);
      names.set(n, v.id);
    }
    vnIds.add(v.id);
    vnis.add(v.vni);
  });
  const resolve = (ref: number | string, key: string): number => {
    if (typeof ref === "number") {
      if (!vnIds.has(ref)) throw new ConfigError(file, key, `unknown VN ${ref}`);
      return ref;
    }
    const id = names.get(ref);
    if (id === undefined) throw new ConfigError(file, key, `unknown VN "${ref}"`);
    return id;
  };
  const vnics = new Set<string>();
  cfg.vnics.forEach((n, i) => {
    if (!ports.has(n.port)) throw new ConfigError(file, `vnics.${i}.port`, `unknown port "${n.port}"`);
    if (vnics.has(n.vnic)) throw new ConfigError(file, `vnics.${i}.vnic`, `duplicate VNIC ${n.vnic}`);
    vnics.add(n.vnic);
    n.vns.forEach((b, j) => resolve(b.vn, `vnics.${i}.vns.${j}.vn`));
  });
  cfg.remotes.forEach((r, i) => {
    r.vns.forEach((v, j) => resolve(v, `remotes.${i}.vns.${j}`));
    r.addrs.forEach((a, j) => resolve(a.vn, `remotes.${i}.addrs.${j}.vn`));
  });
}

/** Resolves a VN reference (id, name or alias) against the configuration's catalog. */
export function resolveVn(cfg: NveConfig, ref: number | string): NveConfig["vns"][number] | undefined {
  return cfg.vns.find((v) => v.id === ref || v.name === ref || v.alias === ref);
}
