// Answer after fsync (issue 17; PROTOCOL.md §2 "An NVE answers a request only
// after the change is durable"): the crash test kills the process, not the
// machine, so it would pass with LMDB's noSync. Here `nvedge run` runs under an
// LD_PRELOAD shim (test/support/sync-shim.c, built with cc) that records every
// write to a regular file and every fdatasync/fsync/msync with CLOCK_MONOTONIC
// times. For each acknowledged change, every write to the store between the
// request and its answer must be covered by a sync of that file that started
// after the write and returned before the answer arrived (or be an O_DSYNC
// write). A negative control runs the same NVE with the shim's sync calls made
// no-ops (what noSync does) and the same check must then fail.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NVE_POOL, brokerFixtures, nextNve, rawClient, spawnNvedge, until, type RunningBroker } from "./support/control-harness.js";
import { onPath, requireTool } from "./support/tools.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SHIM_SRC = join(ROOT, "test", "support", "sync-shim.c");
const u = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const m = (n: number) => `02:00:5e:00:01:${n.toString(16).padStart(2, "0")}`;
const N = 8; // VNICs: attached, then shut down, one request at a time

interface Call { call: string; fd: number; start: bigint; end: bigint; dsync: boolean; path: string }
const isSync = (c: Call) => c.call === "fdatasync" || c.call === "fsync" || c.call === "msync";

function parseLog(file: string): Call[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => {
    const [call, fd, start, end, dsync, ...path] = l.split(" ");
    return { call, fd: Number(fd), start: BigInt(start), end: BigInt(end), dsync: dsync === "1", path: path.join(" ") };
  });
}

/** For each answered request [t0, t1]: the store writes in it not covered by a later sync of the same file before t1. */
function uncovered(calls: Call[], storeDir: string, windows: { id: string; t0: bigint; t1: bigint }[]): string[] {
  const out: string[] = [];
  for (const w of windows) {
    const writes = calls.filter((c) => !isSync(c) && c.path.startsWith(storeDir) && c.start >= w.t0 && c.end <= w.t1);
    if (writes.length === 0) { out.push(`${w.id}: no store write between the request and its answer`); continue; }
    for (const x of writes) {
      if (x.dsync) continue;
      const covered = calls.some((s) => isSync(s) && (s.call === "msync" || (s.fd === x.fd && s.path === x.path)) && s.start >= x.end && s.end <= w.t1);
      if (!covered) out.push(`${w.id}: ${x.call} to ${x.path} at ${x.end} ns not followed by a sync before the answer at ${w.t1} ns`);
    }
  }
  return out;
}

const CC = requireTool("cc", () => onPath("cc"), "the answer-after-fsync check (an LD_PRELOAD shim built with cc)");
if (CC) {
  const s = suite("answer after fsync (LD_PRELOAD sync recorder)");
  let b: RunningBroker;
  let work: string;
  let shim: string;
  s.before(async () => {
    work = mkdtempSync(join(tmpdir(), "nvl-fsync-"));
    shim = join(work, "sync-shim.so");
    const r = spawnSync("cc", ["-shared", "-fPIC", "-O2", "-Wall", "-o", shim, SHIM_SRC, "-ldl"], { encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0) throw new Error(`cc ${SHIM_SRC} failed (${r.status ?? r.signal}): ${r.stderr}`);
    b = await brokerFixtures()[0].start(["hv-1", ...NVE_POOL], NVE_POOL);
  });
  s.after(async () => {
    await b?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Runs `nvedge run` on a fresh LMDB store under the shim, makes 2N changes one at a time, returns the check's findings. */
  async function run(tag: string, env: Record<string, string>): Promise<{ problems: string[]; syncs: number; windows: number }> {
    const nve = nextNve();
    const dir = join(work, tag);
    const store = join(dir, "store");
    const log = join(dir, "sync.log");
    const cfg = join(dir, "nve.json");
    spawnSync("mkdir", ["-p", dir]);
    writeFileSync(cfg, JSON.stringify({
      nve, underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
      ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
      vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan", mtu: 1450 } }],
    }));
    const p = await spawnNvedge(["run", "--config", cfg, "--io", "none", "--store", store, "--broker", b.url, "--admin-socket", join(dir, "admin.sock")],
      { LD_PRELOAD: shim, NVEDGE_SYNC_LOG: log, ...env });
    const r = await rawClient(b, "hv-1", nve);
    try {
      await until(async () => (await r.send(JSON.stringify({ id: "h", op: "hello", agent: "fsync" }), "h", "hv-1", 1000).catch(() => undefined))?.ok === true,
        20_000, `nvedge run serving (stderr: ${p.err().slice(-500)})`);
      const windows: { id: string; t0: bigint; t1: bigint }[] = [];
      const change = async (id: string, op: string, fields: Record<string, unknown>) => {
        const t0 = process.hrtime.bigint();
        const rsp = await r.send(JSON.stringify({ id, op, ...fields }), id, "hv-1", 10_000);
        const t1 = process.hrtime.bigint(); // CLOCK_MONOTONIC, the shim's clock
        assert.is(rsp.ok, true, JSON.stringify(rsp));
        windows.push({ id, t0, t1 });
      };
      for (let i = 1; i <= N; i++) await change(`a${i}`, "vnic.attach", { vnic: u(i), vn: { alias: "blue" }, addrs: [{ mac: m(i), ips: [`10.0.0.${i}`] }] });
      for (let i = 1; i <= N; i++) await change(`d${i}`, "vnic.deactivate", { vnic: u(i), reason: "shutdown" });
      const calls = parseLog(log);
      return { problems: uncovered(calls, store, windows), syncs: calls.filter(isSync).length, windows: windows.length };
    } finally {
      await r.close().catch(() => {});
      await p.stop();
    }
  }

  s("every acknowledged change was written to the store and fdatasync'd before its answer", async () => {
    const r = await run("synced", {});
    assert.ok(r.syncs >= r.windows, `${r.syncs} syncs recorded for ${r.windows} changes`);
    assert.equal(r.problems, [], r.problems.join("\n"));
  });

  s("negative control: with the sync calls made no-ops (as noSync would) the same check fails for every change", async () => {
    const r = await run("nosync", { NVEDGE_SYNC_SKIP: "1" });
    assert.is(r.syncs, 0);
    const failed = new Set(r.problems.map((x) => x.split(":")[0]));
    assert.is(failed.size, r.windows, r.problems.join("\n"));
  });

  s.run();
}
