// The data-plane test files' shared setup and checks: a DataPlane programmed
// with the fixture (frames.ts fixtureOps), byte comparison through the
// encoder's diff, and the single-drop check.
import * as assert from "uvu/assert";
import { DataPlane } from "../../host/dataplane/dataplane.js";
import * as E from "./encoder.js";
import * as F from "./frames.js";

/**
 * How the fixture loads the data plane: the core module, or with
 * NVEDGE_TEST_DATAPLANE=component the same core as a WebAssembly component
 * (test/firmware-component.test.ts runs the data-plane test files that way).
 */
export const fixtureLoader: "core" | "component" = process.env.NVEDGE_TEST_DATAPLANE === "component" ? "component" : "core";

/** A new DataPlane with the fixture programmed, for a test that changes it. */
export async function fixtureDp(f: F.Family): Promise<DataPlane> {
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: fixtureLoader });
  dp.apply(F.fixtureOps(f));
  return dp;
}

/** A getter of one fixture DataPlane per family, made once per caller (a test file's tests that only read it share it). */
export function fixtureCache(): (f: F.Family) => Promise<DataPlane> {
  const dps: Partial<Record<F.Family, DataPlane>> = {};
  return async (f) => (dps[f] ??= await fixtureDp(f));
}

export function eqBytes(actual: Uint8Array, expected: Uint8Array, msg: string): void {
  const d = E.bytesDiff(actual, expected);
  assert.ok(d === "", `${msg}: ${d}`);
}

/** The frame was dropped, counted once under `reason` and under nothing else. */
export function dropped(s: F.Sent, reason: string, label: string): void {
  assert.is(s.outs.length, 0, `${label}: expected a drop (${reason}) but ${s.outs.length} frame(s) left on ${s.outs.map((o) => o.port)}`);
  assert.equal(s.drops, { [reason]: 1 }, `${label}: drop counters`);
}
