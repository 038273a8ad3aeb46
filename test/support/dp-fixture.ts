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

/**
 * The IPv6 outer flow label of an encapsulated frame, checked before a test
 * copies it into the frame it expects (the encapsulator chooses it): over IPv6
 * it carries the flow hash (RFC 6438 §3; README "Data plane choices"), so it is
 * not zero (zero means "no label", RFC 6437 §2) and it carries the same hash as
 * the frame's other entropy field: the UDP source port's low 14 bits (STANDARDS.md:
 * 49152 + hash), or the NVGRE FlowID (hash bits 8-15, RFC 7637 §3.2). A constant
 * label fails here. Over IPv4 there is no label (0).
 */
export function flowLabelOf(v: E.OverlayView, kind: E.EncapKind, label = ""): number {
  if (v.family === 4) {
    assert.is(v.flowLabel, 0, `${label}: no flow label over IPv4`);
    return 0;
  }
  assert.ok(v.flowLabel > 0 && v.flowLabel <= 0xfffff, `${label}: IPv6 flow label ${v.flowLabel} is not a non-zero 20-bit hash`);
  if (kind === "nvgre") assert.is((v.flowLabel >> 8) & 0xff, v.entropy, `${label}: flow label 0x${v.flowLabel.toString(16)} and NVGRE FlowID ${v.entropy} carry different hashes`);
  else assert.is(v.flowLabel & 0x3fff, v.entropy & 0x3fff, `${label}: flow label 0x${v.flowLabel.toString(16)} and UDP source port ${v.entropy} carry different hashes`);
  return v.flowLabel;
}
