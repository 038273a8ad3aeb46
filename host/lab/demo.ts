// `nvedge lab demo` (npm start): placeholder until the demo lands.
import type { LabOptions } from "./topology.js";
export interface DemoOptions extends LabOptions { durationS?: number; workers?: number; keep?: boolean }
export async function runDemo(_o: DemoOptions): Promise<number> {
  console.error("nvedge lab demo: not implemented yet");
  return 1;
}
