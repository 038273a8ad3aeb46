// vn.set-profile (admin, seed §4.5): a VN's new profile, checked (the config
// schema, then ACL rules, QoS and learning, PROTOCOL.md §5, naming the key);
// every End Device using the VN is told (vn.profile event, PROTOCOL.md §4).
import { Ajv, type ValidateFunction } from "ajv";
import { profileSchema } from "../../../config/schema.js";
import type { VnProfile } from "../../../dataplane/ops.js";
import { profileProblems } from "../../../dataplane/acl.js";
import { ProtocolError } from "../../../protocol/errors.js";
import type { VnRef } from "../../../protocol/types.js";
import type { HandlerCtx } from "../../context.js";
import type { Model } from "../../model.js";
import { isConfigHv } from "../../model.js";

// compiled on first use, not at the import of every `nvedge run` (a process start pays for each compile)
let compiled: ValidateFunction | undefined;

/** A copy of `profile` with the schema's defaults, or bad-request naming the key. */
export function checkProfile(profile: unknown): VnProfile {
  const p = structuredClone(profile);
  const validateProfile = (compiled ??= new Ajv({ strict: false, useDefaults: true }).compile(profileSchema));
  if (!validateProfile(p)) throw new ProtocolError("bad-request", `profile: ${validateProfile.errors?.[0]?.instancePath} ${validateProfile.errors?.[0]?.message}`, "profile");
  const pr = profileProblems(p as VnProfile)[0];
  if (pr) throw new ProtocolError("bad-request", `profile.${pr.path}: ${pr.message}`, `profile.${pr.path}`);
  return p as VnProfile;
}

/** The End Devices (not the config's own) with a VNIC in VN `vn`: told of its new profile. */
export function profileAudience(model: Model, vn: number): Set<string> {
  const hvs = new Set<string>();
  for (const r of model.vnics.values()) if (r.vns.some((b) => b.vn === vn) && !isConfigHv(r.hv)) hvs.add(r.hv);
  return hvs;
}

/** The VN's profile is reprogrammed and changed in the catalog with the change; its End Devices are told once it is durable. */
export function setProfile(ctx: HandlerCtx, vnRef: VnRef | number | string, profile: unknown): void {
  const v = ctx.catalog.resolve(vnRef);
  const p = checkProfile(profile);
  ctx.tx.setVn(v.id, { ...v, profile: p });
  const hvs = profileAudience(ctx.tx.model, v.id);
  for (const hv of hvs) ctx.tx.emit(hv, { event: "vn.profile", vn: ctx.catalog.full(v.id), profile: p });
  ctx.tx.log(`operator: VN ${v.id} profile changed; ${hvs.size} End Devices told`);
}
