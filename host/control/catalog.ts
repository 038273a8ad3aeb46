// The VN catalog: the configuration file's VNs, and the VNs the mapping
// authority resolves (PROTOCOL.md §6; host/ima-client/, through NveCore: added
// when resolved or restored from its cache, removed when it deletes them).
// A VN reference by name (uuid), id or alias resolves to one entry (§2 "vn").
import type { NveConfig, VnConfig } from "../config/types.js";
import type { VnProfile } from "../domain/profile.js";
import { ProtocolError } from "../protocol/errors.js";
import type { VnFull, VnRef } from "../protocol/types.js";

export class VnCatalog {
  private byId = new Map<number, VnConfig>();
  private byName = new Map<string, VnConfig>();
  private byAlias = new Map<string, VnConfig>();

  constructor(vns: VnConfig[]) {
    for (const v of vns) this.add(v);
  }

  static fromConfig(cfg: NveConfig): VnCatalog {
    return new VnCatalog(cfg.vns);
  }

  add(v: VnConfig): void {
    this.byId.set(v.id, v);
    if (v.name) this.byName.set(v.name, v);
    if (v.alias) this.byAlias.set(v.alias, v);
  }

  remove(id: number): VnConfig | undefined {
    const v = this.byId.get(id);
    if (!v) return undefined;
    this.byId.delete(id);
    if (v.name) this.byName.delete(v.name);
    if (v.alias) this.byAlias.delete(v.alias);
    return v;
  }

  setProfile(id: number, profile: VnProfile): VnConfig | undefined {
    const v = this.byId.get(id);
    if (v) v.profile = profile;
    return v;
  }

  get(id: number): VnConfig | undefined {
    return this.byId.get(id);
  }

  all(): VnConfig[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id);
  }

  /** A wire reference (or a config-style id/name/alias) → the VN; unknown → `unknown-vn`. */
  resolve(ref: VnRef | VnFull | number | string, field = "vn"): VnConfig {
    let v: VnConfig | undefined;
    if (typeof ref === "number") v = this.byId.get(ref);
    else if (typeof ref === "string") v = this.byId.get(Number(ref)) ?? this.byName.get(ref) ?? this.byAlias.get(ref);
    else if ("id" in ref && ref.id !== undefined) v = this.byId.get(ref.id);
    else if ("name" in ref && ref.name !== undefined) v = this.byName.get(ref.name);
    else if ("alias" in ref && ref.alias !== undefined) v = this.byAlias.get(ref.alias);
    if (!v) throw new ProtocolError("unknown-vn", `no VN ${JSON.stringify(ref)} in this NVE's catalog`, field);
    return v;
  }

  /** Responses carry every reference that exists (PROTOCOL.md §2). */
  full(id: number): VnFull {
    const v = this.byId.get(id);
    if (!v) return { id };
    const f: VnFull = { id: v.id };
    if (v.name) f.name = v.name;
    if (v.alias) f.alias = v.alias;
    return f;
  }
}
