// The data plane as a WebAssembly component (issue 12; wit/dataplane.wit,
// scripts/component.mjs, host/dataplane/component.ts): the built component
// is a real component with the world's interfaces; loaded through jco's
// bindings it gives the same outputs and counters as the core module; the
// data-plane test files pass with it (run again here with
// NVEDGE_TEST_DATAPLANE=component); --dataplane refuses anything else.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DataPlane } from "../host/dataplane/dataplane.js";
import * as F from "./support/frames.js";
import { ROOT } from "./support/firmware.js";

const t = suite("firmware: the data plane component");

t("build/component holds a component whose world is wit/dataplane.wit (tables, frames, counters, trace)", async () => {
  const { componentWit } = await import("@bytecodealliance/jco");
  const bytes = readFileSync(join(ROOT, "build", "component", "dataplane.component.wasm"));
  // A component's preamble: version 0x0d, layer 1 (a core module has version 1, layer 0).
  assert.equal([...bytes.subarray(4, 8)], [0x0d, 0x00, 0x01, 0x00]);
  const wit = await componentWit(bytes);
  for (const i of ["tables", "frames", "counters", "trace"]) assert.match(wit, new RegExp(`export nvedge:dataplane/${i}@0\\.1\\.0;`), `exports ${i}`);
  // jco's bindings (generated from the component) call the core's canonical-ABI export for each function.
  const js = readFileSync(join(ROOT, "build", "component", "dataplane.js"), "utf8");
  for (const f of ["frames@0.1.0#process", "tables@0.1.0#set-mac-local", "counters@0.1.0#drop-ctr-ptr", "trace@0.1.0#set-trace"])
    assert.ok(js.includes(`'nvedge:dataplane/${f}'`), `bindings call ${f}`);
  assert.not.match(wit, /import /, "the world imports nothing (no WASI, no abort)");
});

t("the component and the core module: the same outputs, byte for byte, and the same counters, for every kind of frame", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const core = await DataPlane.create({ macLog2: 12, ipLog2: 12 });
    const comp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: "component" });
    for (const dp of [core, comp]) dp.apply(F.fixtureOps(family));
    assert.equal(comp.layout, core.layout);
    assert.equal(comp.dropNames, core.dropNames);
    const frames: { port: string; frame: Uint8Array }[] = [];
    for (const v of F.VNS) {
      const l = F.locals(v.id), r = F.remotes(v.id);
      frames.push({ port: F.ACC1, frame: F.accessFrame(l.L1, r.R1, { pcp: 3, family }) });
      frames.push({ port: F.ACC1, frame: F.accessFrame(l.L1, l.L2, { family }) });
      frames.push({ port: F.ACC1, frame: F.accessFrame(l.L1, F.BROADCAST, { family }) });
      frames.push({ port: F.ACC1, frame: F.accessFrame({ ...l.L1, mac: "02:00:5e:99:99:99" }, r.R1, { family }) });
      frames.push({ port: F.ACC2, frame: F.accessFrame(l.L3, r.R2, { family }) });
      frames.push({ port: F.UPLINK, frame: F.fromRemote(F.REMOTES[0], family, v.id, F.innerFrame(r.R1, l.L2)) });
    }
    frames.push({ port: F.ACC1, frame: new Uint8Array(10) }); // truncated
    for (const f of frames) {
      const a = core.run(f.port, [f.frame]), b = comp.run(f.port, [f.frame]);
      assert.equal(b.map((o) => [o.port, Buffer.from(o.frame).toString("hex")]), a.map((o) => [o.port, Buffer.from(o.frame).toString("hex")]));
    }
    assert.equal(comp.counters(), core.counters(), `IPv${family}: counters`);
    assert.ok(core.counters().frames.rx === frames.length && core.counters().frames.dropped > 0, "the frames went through, some dropped");
    assert.equal(comp.stats(), core.stats(), `IPv${family}: table stats`);
    const tc = core.trace(F.ACC1, frames[0].frame), tk = comp.trace(F.ACC1, frames[0].frame);
    assert.equal(tk.steps, tc.steps, "trace");
  }
});

t("the data-plane test files pass on the component (NVEDGE_TEST_DATAPLANE=component)", () => {
  const r = spawnSync(process.execPath, [join(ROOT, "node_modules", "uvu", "bin.js"), join(ROOT, "dist", "test"), "dataplane-(access|underlay|tables|acl|qos|glean)\\.test\\.js$"],
    { encoding: "utf8", timeout: 300_000, env: { ...process.env, NVEDGE_TEST_DATAPLANE: "component" }, cwd: ROOT });
  assert.is(r.status, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
  assert.match(r.stdout, /Passed:\s+\d+/);
  assert.not.match(r.stdout, /Skipped:\s+[1-9]/);
});

t("--dataplane takes core or component only: one line, exit 2", () => {
  for (const cmd of [["run", "--config", "/nonexistent.json"], ["pcap", "--config", "/nonexistent.json", "--in", "a=b", "--out-dir", "/tmp/x"]]) {
    const r = spawnSync(process.execPath, [join(ROOT, "bin", "nvedge.js"), ...cmd, "--dataplane", "jit"], { encoding: "utf8", timeout: 60_000 });
    assert.is(r.status, 2, `${cmd[0]}: ${r.stderr}`);
    assert.match(r.stderr, /--dataplane jit: expected core or component/, cmd[0]);
  }
});

t.run();
