// Failure injection into the store (issue 17; issue 10 item 8 "Durability"):
// the NVE runs on a store (memory, and LMDB with its pipelined commit) wrapped
// by test/support/faulty-store.ts, whose next commit or flush fails with ENOSPC
// or EIO. Whatever fails, the NVE must acknowledge nothing that is not on disk,
// tell the IMA nothing that is not on disk, answer nothing more, and stop
// (onFatal; `nvedge run` exits 1); restarted on the same store it holds exactly
// what was acknowledged. PROTOCOL.md §2: "An NVE answers a request only after
// the change is durable".
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  NVE_POOL, brokerFixtures, nextNve, baseConfig, rawClient, spawnNvedge, startNve, until, type RunningBroker, type RunningNve, type StoreKind,
} from "./support/control-harness.js";
import { requireRootAnd } from "./support/tools.js";
import { FaultyStore, type FaultAt, type FaultCode } from "./support/faulty-store.js";
import type { LocalChange } from "../host/ima-client/client.js";

const u = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const m = (n: number) => `02:00:5e:00:00:${n.toString(16).padStart(2, "0")}`;
const attach = (n: number) => ({ vnic: u(n), vn: { alias: "blue" }, addrs: [{ mac: m(n), ips: [`10.0.0.${n}`] }] });

const s = suite("durability: a failed store commit or flush stops the NVE");
let b: RunningBroker;
s.before(async () => {
  b = await brokerFixtures()[0].start(["hv-1", "hv-2", ...NVE_POOL], NVE_POOL);
});
s.after(async () => {
  await b?.close();
});

const cases: [StoreKind, FaultAt, FaultCode][] = [
  ["memory", "commit", "ENOSPC"], ["memory", "commit", "EIO"],
  ["lmdb", "commit", "ENOSPC"], ["lmdb", "flush", "ENOSPC"], ["lmdb", "flush", "EIO"],
];

for (const [kind, at, code] of cases) {
  s(`${kind}: a ${at} failing with ${code}: the request is never acknowledged, the IMA never told, nothing more answered, onFatal called; a restart holds exactly what was acknowledged`, async () => {
    const nve = nextNve();
    let fs: FaultyStore | undefined;
    let fatal: (e: Error) => void = () => {};
    const fatalSeen = new Promise<Error>((res) => (fatal = res));
    const runs: RunningNve[] = [];
    const raws: { close(): Promise<unknown> }[] = [];
    try {
      const run = await startNve(b, { config: baseConfig({}, nve), store: kind, wrap: (st) => (fs = new FaultyStore(st)), onFatal: (e) => fatal(e) });
      runs.push(run);
      assert.is(typeof fs!.commit === "function", kind === "lmdb", "LMDB is driven through its pipelined commit");
      // what the core tells the IMA (PROTOCOL.md §6 announce/withdraw), recorded
      const told: LocalChange[] = [];
      run.svc.core.ima = { setServed: async () => {}, applyLocal: (c) => { told.push(...c); }, resolve: async () => { throw new Error("no IMA here"); } };
      // every response the NVE publishes, recorded
      const answered: any[] = [];
      const publish = run.svc.client.publish.bind(run.svc.client) as (...a: any[]) => any;
      (run.svc.client as any).publish = (topic: string, payload: any, ...rest: any[]) => {
        if (topic.endsWith("/rsp")) answered.push(JSON.parse(String(payload)));
        return publish(topic, payload, ...rest);
      };
      const r = await rawClient(b, "hv-1", nve);
      raws.push(r);
      assert.is((await r.request("hello", { agent: "durability" })).ok, true); // first on every session (PROTOCOL.md §2)
      assert.is((await r.request("vnic.attach", attach(1), "a1")).ok, true);
      assert.ok(told.some((c) => JSON.stringify(c).includes(m(1))), "the IMA was told of the durable change");
      const onDisk = fs!.written;
      const mark = run.prog.mark();
      const toldBefore = told.length;

      fs!.failNext(at, code);
      await r.client.publishAsync(`nvo3/v1/nve/${nve}/req/hv-1`, JSON.stringify({ id: "a2", op: "vnic.attach", ...attach(2) }), { qos: 1 });
      const e = await Promise.race([fatalSeen, new Promise<never>((_, rej) => setTimeout(() => rej(new Error("onFatal not called within 5 s")), 5000))]);
      assert.is((e as any).code, code);
      assert.ok(run.logs.some((l) => l.startsWith(`FATAL: the store failed: `) && l.includes(code)), run.logs.join("\n"));
      assert.is(fs!.written, onDisk, "nothing more reached the disk");
      assert.not.ok(answered.some((a) => a.id === "a2"), "no answer to the request whose change is not on disk");
      assert.is(told.length, toldBefore, "the IMA was told nothing of it");
      if (at === "commit") {
        // refused before the data plane: the group is undone in the model and never programmed
        assert.equal(run.prog.since(mark), [], "nothing programmed");
        assert.not.ok(run.svc.core.bindings().some((x) => x.mac === m(2)), "the model was put back");
      }
      // answers nothing more: neither a new change nor a hello
      let late = false;
      void run.svc.core.request("hv-1", Buffer.from(JSON.stringify({ id: "h", op: "hello", agent: "x" }))).then(() => { late = true; });
      void run.svc.core.request("hv-1", Buffer.from(JSON.stringify({ id: "a3", op: "vnic.attach", ...attach(3) }))).then(() => { late = true; });
      // through the broker too (bounded: the direct calls above show the core never answers at all)
      await r.send(JSON.stringify({ id: "p1", op: "vn.profile", vn: { alias: "blue" } }), "p1", "hv-1", 300).then(() => { late = true; }, () => {});
      assert.is(late, false, "a stopped NVE answered");
      assert.not.ok(answered.some((a) => a.id === "p1" || a.id === "h" || a.id === "a3"));

      // the restart (the supervisor's): on the same disk, exactly the acknowledged state, programmed
      await run.svc.kill();
      const run2 = await startNve(b, { config: baseConfig({}, nve), store: kind, backing: run.backing });
      runs.push(run2);
      const local = run2.svc.core.bindings().filter((x) => x.where === "local").map((x) => x.mac);
      assert.equal(local, [m(1)], "acknowledged a1 is there, unacknowledged a2 is not");
      const programmed = JSON.stringify(run2.prog.since(0));
      assert.ok(programmed.includes(m(1)) && !programmed.includes(m(2)), programmed);
      // and the agent's retry of a2 now succeeds (on a new session with the restarted NVE: hello first)
      assert.is((await r.request("hello", { agent: "durability" }, "h2")).ok, true);
      assert.is((await r.request("vnic.attach", attach(2), "a2-retry")).ok, true);
    } finally {
      for (const x of raws) await x.close().catch(() => {});
      for (const x of runs.reverse()) await x.stop().catch(() => {});
    }
  });
}

s.run();

// ---------------------------------------------------------------- a real full disk under `nvedge run`

// `nvedge run` on LMDB in a tmpfs of a few MiB that a filler file then fills:
// the real ENOSPC from LMDB's page write (host/store/lmdb.ts "could not commit").
// The process must log FATAL and exit 1 with the failing request unanswered;
// restarted on the same store (space freed) it holds exactly the acknowledged VNICs.
if (requireRootAnd(["mount", "umount"], "the full-disk (tmpfs ENOSPC) test of nvedge run")) {
  const full = suite("durability: nvedge run on a full disk");
  let fb: RunningBroker;
  full.before(async () => {
    fb = await brokerFixtures()[0].start(["hv-1", ...NVE_POOL], NVE_POOL);
  });
  full.after(async () => {
    await fb?.close();
  });

  full("a full disk under LMDB (ENOSPC/EIO): FATAL logged, exit code 1, the failing request never acknowledged; the restart holds exactly the acknowledged VNICs", async () => {
    const work = mkdtempSync(join(tmpdir(), "nvl-enospc-"));
    const disk = join(work, "disk");
    mkdirSync(disk);
    let mounted = false;
    const procs: Awaited<ReturnType<typeof spawnNvedge>>[] = [];
    const raws: { close(): Promise<unknown> }[] = [];
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", disk], { timeout: 10_000 });
      mounted = true;
      const nve = nextNve();
      const cfg = join(work, "nve.json");
      writeFileSync(cfg, JSON.stringify({
        nve, underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
        ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
        vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan", mtu: 1450 } }],
      }));
      const start = async () => {
        const p = await spawnNvedge(["run", "--config", cfg, "--io", "none", "--store", join(disk, "store"), "--broker", fb.url, "--admin-socket", join(work, "admin.sock")]);
        procs.push(p);
        const r = await rawClient(fb, "hv-1", nve);
        raws.push(r);
        await until(async () => (await r.send(JSON.stringify({ id: "h", op: "hello", agent: "enospc" }), "h", "hv-1", 1000).catch(() => undefined))?.ok === true,
          20_000, `nvedge run serving (stderr: ${p.err().slice(-500)})`);
        return { p, r };
      };
      const { p, r } = await start();
      const acked: number[] = [];
      const attachReq = (i: number) => JSON.stringify({ id: `a${i}`, op: "vnic.attach", vnic: u(i), vn: { alias: "blue" },
        addrs: [{ mac: `02:00:5e:01:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 0xff).toString(16).padStart(2, "0")}` }] });
      for (let i = 1; i <= 5; i++) {
        assert.is((await r.send(attachReq(i), `a${i}`, "hv-1", 10_000)).ok, true);
        acked.push(i);
      }
      // fill the disk: whatever LMDB needs next, it does not get
      try {
        for (let i = 0; i < 1024; i++) appendFileSync(join(disk, "fill"), Buffer.alloc(64 * 1024));
        throw new Error("the 4 MiB tmpfs never filled");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
      }
      let failed: number | undefined;
      for (let i = 6; i <= 400 && failed === undefined; i++) {
        const rsp = await Promise.race([r.send(attachReq(i), `a${i}`, "hv-1", 30_000), p.exited.then(() => undefined)]);
        if (rsp === undefined) failed = i;
        else {
          assert.is(rsp.ok, true, JSON.stringify(rsp));
          acked.push(i);
        }
      }
      assert.ok(failed !== undefined, `400 attaches on a full disk all acknowledged: stderr ${p.err().slice(-500)}`);
      const code = await Promise.race([p.exited, new Promise((res) => setTimeout(() => res("still running after 10 s"), 10_000))]);
      assert.is(code, 1, `exit code; stderr:\n${p.err().slice(-2000)}`);
      // LMDB reports the full tmpfs as ENOSPC (a page write past the end) or EIO (a write into the file LMDB grew sparse)
      const fatal = /FATAL: the store failed: .*(No space left on device|Input\/output error)/.exec(p.err());
      assert.ok(fatal, p.err().slice(-2000));
      assert.not.ok(r.got.some((g) => g.msg?.id === `a${failed}` && g.msg.ok), "the failing attach was never acknowledged");
      // the supervisor's restart, with space again: exactly the acknowledged VNICs
      rmSync(join(disk, "fill"));
      const again = await start();
      const show = await again.r.send(JSON.stringify({ id: "s", op: "show" }), "s", "hv-1", 10_000);
      assert.is(show.ok, true, JSON.stringify(show));
      const have = (show.vnics as { vnic: string }[]).map((v) => v.vnic).sort();
      assert.equal(have, acked.map(u).sort(), `after the restart: ${have.length} VNICs, ${acked.length} acknowledged`);
      console.log(`  full disk: ${acked.length} attaches acknowledged, #${failed} failed (${fatal![1]}); exit 1; the restart holds the ${acked.length}`);
    } finally {
      for (const x of raws) await x.close().catch(() => {});
      for (const x of procs) await x.stop().catch(() => {});
      if (mounted) spawnSync("umount", ["-l", disk], { timeout: 10_000 });
      rmSync(work, { recursive: true, force: true });
    }
  });

  full.run();
}
