// drain (admin, maintenance): every End Device of this NVE gets nve.draining (PROTOCOL.md §4).
import type { Event } from "../../../protocol/types.js";

export function drain(hvs: string[], onEvent: (hv: string, e: Event) => void, log: (l: string) => void): string[] {
  for (const hv of hvs) onEvent(hv, { event: "nve.draining" });
  log(`operator: draining, ${hvs.length} End Devices told`);
  return hvs;
}
