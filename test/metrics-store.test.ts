// The store's write time on /metrics (NveMetrics.instrumentStore): every
// transaction and every pipelined commit observed once, until it is durable,
// a failed one included; the store's other methods pass through.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NveMetrics } from "../host/metrics/metrics.js";
import { MemoryStore } from "../host/store/memory.js";
import type { Store } from "../host/store/store.js";

const metricsOf = () => new NveMetrics({ counters: () => undefined, control: () => ({}) as never, mqttConnected: () => true }, { nve: "nve-m" });
async function commits(m: NveMetrics): Promise<{ count: number; sum: number; le1ms: number }> {
  const text = await m.registry.getSingleMetricAsString("nvedge_store_commit_duration_seconds");
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  return {
    count: num(/^nvedge_store_commit_duration_seconds_count\{nve="nve-m"\} (\S+)$/m),
    sum: num(/^nvedge_store_commit_duration_seconds_sum\{nve="nve-m"\} (\S+)$/m),
    le1ms: num(/^nvedge_store_commit_duration_seconds_bucket\{le="0\.001",nve="nve-m"\} (\S+)$/m),
  };
}

test("instrumentStore: each transaction observed once with its duration; a refused one too; reads pass through", async () => {
  const m = metricsOf();
  const store = m.instrumentStore(await MemoryStore.open());
  assert.equal((await commits(m)).count, 0);
  await store.transaction((w) => w.put("hvs", "hv-1", { hv: "hv-1", port: "acc0" } as never));
  await store.transaction((w) => w.del("hvs", "hv-1"));
  let c = await commits(m);
  assert.is(c.count, 2);
  assert.ok(c.sum >= 0 && c.sum < 1, `sum ${c.sum} s`);
  assert.is(c.le1ms, 2, "two memory transactions within 1 ms");
  let err: unknown;
  try { await store.transaction(() => { throw new Error("refused"); }); } catch (e) { err = e; }
  assert.match(String(err), /refused/);
  c = await commits(m);
  assert.is(c.count, 3, "the refused transaction observed too");
  await store.transaction((w) => w.put("hvs", "hv-2", { hv: "hv-2", port: "acc1" } as never));
  assert.equal(store.get("hvs", "hv-2"), { hv: "hv-2", port: "acc1" }, "reads go to the store");
});

test("instrumentStore: a pipelined commit is observed when durable, not when stored", async () => {
  const m = metricsOf();
  let flush!: () => void;
  const base = await MemoryStore.open();
  const pipelined = Object.assign(Object.create(base) as Store, {
    commit: async <T>(fn: Parameters<Store["transaction"]>[0]) => {
      const result = await base.transaction(fn) as T;
      return { result, durable: new Promise<void>((r) => { flush = r; }) };
    },
  });
  const store = m.instrumentStore(pipelined);
  const { durable } = await store.commit!((w) => w.put("hvs", "hv-3", { hv: "hv-3", port: "acc2" } as never));
  await new Promise((r) => setTimeout(r, 5));
  assert.is((await commits(m)).count, 0, "not durable yet");
  flush();
  await durable;
  const c = await commits(m);
  assert.is(c.count, 1);
  assert.ok(c.sum >= 0.004, `the wait for durable counted: ${c.sum} s`);
});

test.run();
