// `nvedge run`'s early workers (host/cli/run-early.ts, issue 15): what they
// are started with from the unvalidated file, and when run.ts must start
// them again because the validated file says otherwise. No packet I/O here:
// startWorkersEarly is only called where it returns before starting a pool.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sameInterfaces, startWorkersEarly } from "../host/cli/run-early.js";
import { IMAGE_FILE } from "../host/paths.js";

const cfg = (underlay: Record<string, unknown>) => ({ underlay: { port: "eth1", ...underlay }, ports: [{ name: "eth2" }] }) as unknown as Parameters<typeof sameInterfaces>[0];

test("sameInterfaces: underlay.tunnelGso is part of what the early workers were started with (absent = auto)", () => {
  assert.ok(sameInterfaces(cfg({}), cfg({ tunnelGso: "auto" })), "absent is the default, auto");
  assert.ok(sameInterfaces(cfg({ tunnelGso: "off" }), cfg({ tunnelGso: "off" })));
  // workers started with the tap (auto) while the file says off must be started again: they would send through the tap
  assert.not.ok(sameInterfaces(cfg({}), cfg({ tunnelGso: "off" })), "auto against off");
  assert.not.ok(sameInterfaces(cfg({ vlan: 10 }), cfg({})), "the uplink VLAN still counts");
});

test("startWorkersEarly: an underlay.tunnelGso it cannot act on leaves the start to the ordinary path (no workers)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-run-early-"));
  try {
    writeFileSync(join(dir, IMAGE_FILE), "not read here");
    const file = join(dir, "nvedge.json");
    writeFileSync(file, JSON.stringify({ underlay: { port: "nvl-none0", tunnelGso: "sometimes" }, ports: [{ name: "nvl-none1" }] }));
    assert.is(await startWorkersEarly({ configFile: file, io: "afpacket", storeDir: dir, memoryStore: false, loader: "core" }), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
