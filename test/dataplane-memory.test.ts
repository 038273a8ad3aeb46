// Huge pages for the data plane's tables (host/dataplane/memory.ts, the
// addon's adviseHuge through host/io/hugepages.ts): advised at create, and bindings programmed after it
// land in huge pages when the kernel has THP.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { thpUsable, anonHugeBytes } from "../host/dataplane/memory.js";
import { loadAddon } from "../host/io/addon.js";
import { adviseHugePages } from "../host/io/hugepages.js";

const PROFILE = { encap: "vxlan" as const, mtu: 1500 };
const usable = thpUsable();

test("create({adviseHuge}) advises the tables' memory; bindings then fault in huge pages", async () => {
  if (!usable) {
    // the option must then fail clearly rather than run silently without
    try {
      await DataPlane.create({ adviseHuge: adviseHugePages });
      assert.unreachable("created with huge pages while THP is off");
    } catch (e) {
      assert.match((e as Error).message, /transparent huge pages/);
    }
    return;
  }
  const before = anonHugeBytes();
  const dp = await DataPlane.create({ adviseHuge: adviseHugePages });
  const st = dp.stats();
  // the MAC (32 MiB) and IP (64 MiB) tables at the default size are inside the advised range
  assert.ok(st.hugePagesAdvised >= 96 * 1048576, `advised ${st.hugePagesAdvised} bytes`);
  dp.apply([{ op: "port", port: "a0" }, { op: "vn", vn: 100, vni: 5000, profile: PROFILE }, { op: "tag", port: "a0", tag: 10, vn: 100 }]);
  const ops = [];
  for (let i = 0; i < 20000; i++) {
    const b = i.toString(16).padStart(6, "0");
    ops.push({ op: "mac.local" as const, vn: 100, mac: `02:00:00:${b.slice(0, 2)}:${b.slice(2, 4)}:${b.slice(4)}`, port: "a0", active: true });
  }
  dp.apply(ops);
  const grown = anonHugeBytes() - before;
  // 20,000 bindings spread over every 2 MiB page of the 32 MiB MAC table
  assert.ok(grown >= 16 * 1048576, `only ${grown} bytes of huge pages after 20,000 bindings`);
  const plain = await DataPlane.create();
  assert.is(plain.stats().hugePagesAdvised, 0, "off unless asked for");
});

test("adviseHuge refuses a range outside the buffer and advises nothing in less than a 2 MiB page", () => {
  const a = loadAddon();
  const buf = new ArrayBuffer(1 << 16);
  assert.throws(() => a.adviseHuge(buf, 0, 1 << 20), /outside the buffer/);
  assert.throws(() => a.adviseHuge(buf, -1, 10), /outside the buffer/);
  assert.is(a.adviseHuge(buf, 0, buf.byteLength), 0);
});

test.run();
