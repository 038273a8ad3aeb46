// The arm64 bundle (issue 12), installed by firmware/install and run on this
// x86 machine under qemu-user (NVEDGE_EMULATOR, no binfmt_misc): its own Node
// runtime, its cross-compiled addon and lmdb's arm64 binary.
// - `nvedge pcap` on the encoder fixtures writes byte-identical captures and
//   counters to the x86 checkout's (every encapsulation, decapsulation,
//   hairpin, flood and drop kind of the fixture);
// - `nvedge run --io none` with the LMDB store starts, answers hello, and
//   after a restart keeps its bindings (the same tag for the same VNIC).
// qemu is slow (seconds per Node start): three slot runs in all, each bounded.
// Strict when the cross tools are missing (test/support/tools.ts): a failed run naming them, or a skip on record.
import { suite } from "uvu";
import { requireTool } from "./support/tools.js";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePcap, type PcapPacket } from "../host/pcap/pcap.js";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { adminRequest } from "../host/control/admin.js";
import * as F from "./support/frames.js";
import * as E from "./support/encoder.js";
import { rawClient, until } from "./support/control-harness.js";
import { EMULATOR, ROOT, bundle, crossMissing, install, keyPair } from "./support/firmware.js";

const missing = crossMissing();
// Strict (issue 17): as root or in CI, missing cross tools fail the run (NVEDGE_TEST_SKIP=arm64-cross skips them, on record).
const CROSS = requireTool("arm64-cross", missing === null, `the arm64 bundle under qemu (${missing})`);
const t = suite("firmware: the arm64 bundle under qemu");
const env = { NVEDGE_EMULATOR: EMULATOR };
let root: string | undefined;

/** The arm64 bundle with its runtime, installed under a fresh --root (once). */
function slotBin(): string {
  if (!root) {
    const b = bundle({ arch: "arm64", runtime: true, key: "k1", version: "1.0.0-arm64" });
    root = mkdtempSync(join(tmpdir(), "nvl-fwarm-"));
    const r = install([b.file, "--root", root, "--pubkey", keyPair("k1").pub,
      // (the slot's CLI itself runs in every test below; a Node start under qemu costs seconds)
      "--health-cmd", `test -x "$NVEDGE_SLOT/runtime/bin/node"`, "--health-timeout", "30"], env);
    assert.is(r.code, 0, `install: ${r.err}`);
    const m = JSON.parse(readFileSync(join(root, "opt", "nvedge", "current", "manifest.json"), "utf8"));
    assert.is(m.arch, "arm64");
    const file = spawnSync("file", ["-b", join(root, "opt", "nvedge", "current", "runtime", "bin", "node")], { encoding: "utf8" }).stdout;
    assert.match(file, /ARM aarch64/, "the slot's runtime is arm64");
  }
  return join(root, "opt", "nvedge", "current", "bin", "nvedge");
}

const pkt = (frame: Uint8Array, tsSec: number): PcapPacket => ({ frame, tsSec, tsUsec: 0, origLen: frame.length });

/** Captures for acc1 and the uplink covering every VN's encapsulation (VXLAN, Geneve, NVGRE, the DSCP profile), hairpin, flood, spoofing, decapsulation. */
function captures(dir: string, family: F.Family): string[] {
  const acc: PcapPacket[] = [], up: PcapPacket[] = [];
  let ts = 100;
  for (const v of F.VNS) {
    const l = F.locals(v.id), r = F.remotes(v.id);
    acc.push(pkt(F.accessFrame(l.L1, r.R1, { pcp: 5, family }), ts++));
    acc.push(pkt(F.accessFrame(l.L1, l.L2, { family }), ts++));
    acc.push(pkt(F.accessFrame(l.L1, F.BROADCAST, { family }), ts++));
    acc.push(pkt(F.accessFrame({ ...l.L1, mac: "02:00:5e:99:99:99" }, r.R1, { family }), ts++));
    acc.push(pkt(F.accessFrame(l.L3, r.R2, { family }), ts++)); // an inactive VNIC
    up.push(pkt(F.fromRemote(F.REMOTES[0], family, v.id, F.innerFrame(r.R1, l.L2)), ts++));
  }
  up.push(pkt(F.fromRemote(F.REMOTES[0], family, 100, F.innerFrame(F.remotes(100).R1, F.locals(100).L2), {},
    E.vxlan({ vni: 4242 }, F.innerFrame(F.remotes(100).R1, F.locals(100).L2))), ts++));
  writePcap(join(dir, "acc1-in.pcap"), acc);
  writePcap(join(dir, "up-in.pcap"), up);
  const cfg = join(dir, "nve.json");
  writeFileSync(cfg, JSON.stringify(F.fixtureConfig(family)));
  return ["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "acc1-in.pcap")}`, "--in", `${F.UPLINK}=${join(dir, "up-in.pcap")}`];
}

// One family, one loader (each qemu run costs tens of seconds under load): the
// component gives the core's bytes on x86 (test/firmware-component.test.ts)
// and runs the same JavaScript and wasm on arm64.
for (const [family, loader] of [[4, "core"]] as const) {
  if (CROSS) t(`arm64 nvedge pcap --dataplane ${loader} (IPv${family} underlay): the same bytes as x86, file by file`, () => {
    const bin = slotBin();
    const dir = mkdtempSync(join(tmpdir(), "nvl-fwpcap-"));
    try {
      const args = captures(dir, family);
      const x86 = spawnSync(process.execPath, [join(ROOT, "bin", "nvedge.js"), ...args, "--out-dir", join(dir, "x86")], { encoding: "utf8", timeout: 60_000 });
      assert.is(x86.status, 0, `x86: ${x86.stderr}`);
      const arm = spawnSync(bin, [...args, "--out-dir", join(dir, "arm64"), "--dataplane", loader], { encoding: "utf8", timeout: 180_000, env: { ...process.env, ...env } });
      assert.is(arm.status, 0, `arm64: ${arm.stderr}`);
      const files = readdirSync(join(dir, "x86")).sort();
      assert.equal(readdirSync(join(dir, "arm64")).sort(), files);
      assert.ok(files.includes("uplink.pcap") && files.includes("acc2.pcap") && files.includes("counters.json"), files.join(" "));
      for (const f of files) {
        const a = readFileSync(join(dir, "x86", f)), b = readFileSync(join(dir, "arm64", f));
        if (f === "uplink.pcap" || f === "acc2.pcap") assert.ok(a.length > 24 + 16 * 4, `${f} holds the frames`);
        assert.ok(a.equals(b), `${f}: arm64 (${b.length} bytes) differs from x86 (${a.length} bytes)`);
      }
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
}

if (CROSS) t("arm64 nvedge run --io none with LMDB: starts, answers hello, restarts and keeps its bindings", async () => {
  const bin = slotBin();
  const dir = mkdtempSync(join(tmpdir(), "nvl-fwrun-"));
  const NVE = "nve-arm";
  const broker = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves: [NVE] });
  const b = { name: "embedded", url: broker.url, protocolVersion: 4 as const, creds: (id: string) => ({ username: id }), close: () => broker.close() };
  const cfg = join(dir, "nve.json");
  writeFileSync(cfg, JSON.stringify({
    nve: NVE,
    underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe", udpPort: 4789 },
    ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
    vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan", service: "l2", mtu: 1500, portSecurity: true, arpSuppress: true, learn: "explicit" } }],
  }));
  const admin = join(dir, "admin.sock");
  const start = () => {
    const child = spawn(bin, ["run", "--config", cfg, "--io", "none", "--store", join(dir, "store"), "--broker", broker.url, "--admin-socket", admin],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    const exited = new Promise<void>((res) => child.once("exit", () => res()));
    return {
      err: () => err,
      ready: () => until(async () => {
        if (child.exitCode !== null) throw new Error(`nvedge run exited ${child.exitCode}: ${err}`);
        try { await adminRequest(admin, { cmd: "show", what: "ports" }, 2000); return true; } catch { return false; }
      }, 180_000, "the arm64 nvedge run's admin socket"),
      async stop() {
        child.kill("SIGTERM");
        const k = setTimeout(() => child.kill("SIGKILL"), 30_000);
        await exited;
        clearTimeout(k);
      },
    };
  };
  const vnic = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
  const addrs = [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }];
  let nve = start();
  let hv: Awaited<ReturnType<typeof rawClient>> | undefined;
  try {
    await nve.ready();
    hv = await rawClient(b, "hv-1", NVE);
    const h = await hv.request("hello", { agent: "fw-test", capabilities: [] });
    assert.ok(h.ok, JSON.stringify(h));
    const a = await hv.request("vnic.attach", { vnic, vn: { id: 100 }, addrs });
    assert.ok(a.ok, JSON.stringify(a));
    const tag = a.tag as number;
    assert.ok(Number.isInteger(tag) && tag >= 1 && tag <= 4094, `tag ${tag}`);
    await hv.close();
    hv = undefined;
    await nve.stop();

    nve = start();
    await nve.ready();
    // Restored from LMDB before anything else happens (PROTOCOL.md §3).
    const restored = JSON.stringify(await adminRequest(admin, { cmd: "show", what: "bindings" }, 10_000));
    assert.ok(restored.includes(vnic) && restored.includes("02:00:5e:00:00:01"), `show bindings after the restart: ${restored}`);
    hv = await rawClient(b, "hv-1", NVE);
    const h2 = await hv.request("hello", { agent: "fw-test", capabilities: [] });
    assert.ok(h2.ok, JSON.stringify(h2));
    // The same VNIC attached again: the binding the store kept, with its tag.
    const again = await hv.request("vnic.attach", { vnic, vn: { id: 100 }, addrs });
    assert.ok(again.ok, JSON.stringify(again));
    assert.is(again.tag, tag, "the tag survives the restart");
  } finally {
    await hv?.close().catch(() => {});
    await nve.stop();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

if (CROSS) t.after(() => { if (root) rmSync(root, { recursive: true, force: true }); });
if (CROSS) t.run();
