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
import { NVE_POOL, brokerFixtures, nextNve, baseConfig, rawClient, startNve, type RunningBroker, type RunningNve, type StoreKind } from "./support/control-harness.js";
import { FaultyStore, type FaultAt, type FaultCode } from "./support/faulty-store.js";
import type { LocalChange } from "../host/ima/client.js";

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
      // and the agent's retry of a2 now succeeds
      assert.is((await r.request("vnic.attach", attach(2), "a2-retry")).ok, true);
    } finally {
      for (const x of raws) await x.close().catch(() => {});
      for (const x of runs.reverse()) await x.stop().catch(() => {});
    }
  });
}

s.run();
