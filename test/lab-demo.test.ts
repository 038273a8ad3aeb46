// `nvedge lab demo` end to end (what `npm start` runs), on a lab of its own
// (--id, --state-dir): it brings the lab up, runs the NVEs and agents, attaches
// the VMs (each OVS port gets the tag its NVE returned), pings through nvedge,
// and after --duration takes everything down. Needs root.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { isRoot, missingTool, namespaceExists } from "./support/netns.js";
import { describeLab, labNamespaces } from "../host/lab/topology.js";
import { labDown } from "../host/lab/engine.js";

const BIN = fileURLToPath(new URL("../../bin/nvedge.js", import.meta.url));
const built = (name: string) => existsSync(fileURLToPath(new URL(`../host/cli/${name}.js`, import.meta.url)));

const missing = isRoot() ? missingTool("ovs-vswitchd", "ethtool", "ping") : "root";
if (missing) {
  console.log(`lab-demo.test: SKIPPED (needs ${missing})`);
} else {
  test("lab demo --duration: VMs attached and tagged, pings answered through nvedge, nothing left afterwards", async () => {
    const id = "d" + randomBytes(3).toString("hex");
    const stateDir = mkdtempSync("/tmp/nvl-demo-");
    const d = describeLab({ id, stateDir });
    try {
      const r = spawnSync(process.execPath, [BIN, "lab", "demo", "--id", id, "--state-dir", stateDir, "--duration", "2"],
        { encoding: "utf8", timeout: 240_000, killSignal: "SIGINT" });
      const out = r.stdout + r.stderr;
      assert.is(r.status, 0, out);
      // The remote VTEPs nvedge did not write always talk to each other.
      assert.match(out, /kvx -> ovtep-v\s+[1-3]\/3 replies/, out);
      if (built("run") && built("agent")) {
        for (const v of d.vms) assert.match(out, new RegExp(`attach ${v.name} .* tag \\d+ -> OVS port ${v.ovsPort}`), out);
        // The first echo may go to ARP; at least one answer each, through nvedge.
        for (const pair of ["vm11 -> vm21", "vm11 -> vm31", "vm11 -> kvx", "vm12 -> ovtep-g", "vm22 -> vm12"])
          assert.match(out, new RegExp(`${pair}\\s+[1-3]/3 replies`), `${pair}\n${out}`);
        assert.match(out, /live counters/);
        // issue 13: into a pipe, one line per sample and no carriage returns
        assert.match(r.stdout, /^\[\s*\d+ s\] .+$/m, out);
        assert.not.match(r.stdout, /\r/);
        // issue 6: the mapping authority runs with the agents, both NVEs use it
        assert.match(out, /IMA: nvedge ima run in the root namespace/, out);
      } else {
        assert.match(out, /not available in this build: .*nvedge (run|agent)/, out);
      }
      assert.match(out, new RegExp(`lab down: ${labNamespaces(d).length} namespaces removed`), out);
      for (const n of labNamespaces(d)) assert.not.ok(namespaceExists(n), `${n} left behind`);
      assert.not.ok(existsSync(d.descriptionFile));
    } finally {
      await labDown(d);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  test.run();
}
