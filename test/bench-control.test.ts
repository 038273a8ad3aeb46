// The control bench's reading of the NVE's own pauses (bench/control.ts,
// issue 15 "paced p99"): the GC pauses and event-loop delays the paced rows
// report come from node's monitors as prom-client exports them on
// `--metrics` (prefix nvedge_process_). Read from a real registry here, so a
// change of prom-client's names or format fails this test instead of leaving
// the rows' columns at zero.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Registry, collectDefaultMetrics } from "prom-client";
import { parsePauses, pausesIn, rawAnswer, runRaw, startRaw, type RawHv } from "../bench/control.js";
import { parsePerfStat, perOp } from "../bench/syscalls.js";
import { baseConfig, brokerFixtures, startNve, VN_BLUE } from "./support/control-harness.js";

test("bench control: a case's GC pauses and its event loop's longest delay, from two scrapes of the default metrics", async () => {
  const r = new Registry();
  r.setDefaultLabels({ nve: "nve-test" });
  collectDefaultMetrics({ register: r, prefix: "nvedge_process_" });
  await new Promise((res) => setTimeout(res, 50));
  const before = parsePauses(await r.metrics()); // resets the loop delay monitor, as the bench's scrape before a case
  // the monitor's first tick after a reset only sets its baseline (node's
  // IntervalHistogram): a few ticks before the stall, as in a 5 s case
  await new Promise((res) => setTimeout(res, 40));
  // young-generation garbage (scavenges) and one stall of the event loop
  let keep: unknown[] = [];
  for (let i = 0; i < 1_000_000; i++) { // ~50 MB: scavenges even with a grown 16 MiB semi-space
    keep.push({ i, s: `x${i}` });
    if (keep.length > 1000) keep = [];
  }
  const until = Date.now() + 60;
  while (Date.now() < until) { /* a 60 ms turn */ }
  await new Promise((res) => setTimeout(res, 50)); // the GC observer's entries and a few more loop samples
  const after = parsePauses(await r.metrics());
  const d = pausesIn(before, after) as { nve_gc: { minor: { n: number; ms: number; mean_ms: number }; major: { n: number } }; nve_loop_delay_max_ms: number; nve_loop_delay_p99_ms: number };
  assert.ok(d.nve_gc.minor.n >= 1, `scavenges counted: ${JSON.stringify(d.nve_gc)}`);
  assert.ok(d.nve_gc.minor.ms > 0 && d.nve_gc.minor.mean_ms > 0);
  assert.ok(d.nve_loop_delay_max_ms >= 45, `the 60 ms turn seen (less the monitor's 10 ms tick): ${d.nve_loop_delay_max_ms}`);
  assert.ok(d.nve_loop_delay_p99_ms >= 45);
  // counters only grow: the difference of one scrape with itself is nothing
  const same = pausesIn(after, after) as typeof d;
  assert.is(same.nve_gc.minor.n, 0);
  assert.is(same.nve_gc.major.n, 0);
});

test("bench control: pauses over 10 ms counted from the histogram's 10 ms bucket, by kind", () => {
  const text = [
    'nvedge_process_nodejs_gc_duration_seconds_bucket{le="0.001",nve="a",kind="minor"} 1',
    'nvedge_process_nodejs_gc_duration_seconds_bucket{le="0.01",nve="a",kind="minor"} 7',
    'nvedge_process_nodejs_gc_duration_seconds_bucket{le="+Inf",nve="a",kind="minor"} 10',
    'nvedge_process_nodejs_gc_duration_seconds_sum{nve="a",kind="minor"} 0.09',
    'nvedge_process_nodejs_gc_duration_seconds_count{nve="a",kind="minor"} 10',
    'nvedge_process_nodejs_gc_duration_seconds_bucket{le="0.01",nve="a",kind="major"} 2',
    'nvedge_process_nodejs_gc_duration_seconds_sum{nve="a",kind="major"} 0.05',
    'nvedge_process_nodejs_gc_duration_seconds_count{nve="a",kind="major"} 2',
    'nvedge_process_nodejs_eventloop_lag_p99_seconds{nve="a"} 0.0125',
    'nvedge_process_nodejs_eventloop_lag_max_seconds{nve="a"} 0.034',
  ].join("\n");
  const p = parsePauses(text);
  assert.equal(p.gc.get("minor"), { n: 10, sum: 90, over10: 3 });
  assert.equal(p.gc.get("major"), { n: 2, sum: 50, over10: 0 });
  assert.is(p.lagP99, 12.5);
  assert.is(p.lagMax, 34);
  const none = parsePauses("");
  const d = pausesIn(none, p) as { nve_gc: { minor: { n: number; over_10ms: number; mean_ms: number } }; nve_loop_delay_p99_ms: number; nve_loop_delay_max_ms: number };
  assert.equal(d.nve_gc.minor, { n: 10, ms: 90, over_10ms: 3, mean_ms: 9 });
  assert.is(d.nve_loop_delay_p99_ms, 2.5); // 12.5 ms between the monitor's 10 ms ticks
  assert.is(d.nve_loop_delay_max_ms, 24);
});

test("bench control: perf stat's CSV read as syscalls by name, the rest as other, and per request", () => {
  // perf stat -x , as perf 6.1 writes it: count, unit, event, run time, share (and "<not counted>" for an event that never ran)
  const text = [
    "# started on Tue Dec  8 02:20:01 2026",
    "",
    "40012,,raw_syscalls:sys_enter,1650012345,100.00,,",
    "1050,,context-switches,1650012345,100.00,,",
    "14000,,syscalls:sys_enter_read,1650012345,100.00,,",
    "4010,,syscalls:sys_enter_write,1650012345,100.00,,",
    "0,,syscalls:sys_enter_writev,1650012345,100.00,,",
    "15970,,syscalls:sys_enter_epoll_ctl,1650012345,100.00,,",
    "2000,,syscalls:sys_enter_epoll_wait,1650012345,100.00,,",
    "<not counted>,,syscalls:sys_enter_futex,0,0.00,,",
  ].join("\n");
  const c = parsePerfStat(text);
  assert.is(c.total, 40012);
  assert.is(c.switches, 1050);
  assert.equal(c.by, { read: 14000, write: 4010, epoll_ctl: 15970, epoll_wait: 2000, other: 40012 - 14000 - 4010 - 15970 - 2000 });
  const p = perOp({ broker: c }, 1000);
  assert.equal(Object.keys(p.broker).slice(0, 3), ["total", "switches", "epoll_ctl"], "the total first, then by count");
  assert.is(p.broker.total, 40.01);
  assert.is(p.broker.read, 14);
  assert.equal(parsePerfStat(""), { total: 0, switches: 0, by: {} });
});

test("bench control: the raw load reads an answer's id, status and tag from its text", () => {
  assert.equal(rawAnswer('{"id":"7","ok":true,"tag":101,"vn":{"id":1},"vni":10000}'), { id: "7", ok: true, tag: 101 });
  assert.equal(rawAnswer('{"id":"7","ok":false,"error":{"code":"not-found","message":"x"}}'), { id: "7", ok: false });
  assert.equal(rawAnswer('{"id":"hv-1-hello","ok":true}'), { id: "hv-1-hello", ok: true });
  assert.is(rawAnswer('{"ok":true,"id":"7"}'), undefined, "not the NVE's order");
  assert.is(rawAnswer("not json"), undefined);
});

for (const f of brokerFixtures()) {
  test(`bench control: the raw load's requests through ${f.name} are answered, attach answers carry a VLAN, refusals are counted`, async () => {
    const hvs = ["hv-1", "hv-2", "hv-3"];
    const b = await f.start(["nve-a", ...hvs], ["nve-a"]);
    const nve = await startNve(b, { config: baseConfig() });
    const raws: RawHv[] = [];
    try {
      for (const hv of hvs) raws.push(await startRaw(b.url, b.creds(hv), hv, "nve-a"));
      const vnic = (h: number, i: number) => `00000000-0000-4000-8000-${h.toString(16).padStart(4, "0")}${i.toString(16).padStart(8, "0")}`;
      const attach = (vn: object) => raws.map((_, h) => Array.from({ length: 25 }, (_, i) => JSON.stringify({ id: String(i), op: "vnic.attach", vnic: vnic(h, i), vn,
        addrs: [{ mac: `02:00:00:00:${h.toString(16).padStart(2, "0")}:${i.toString(16).padStart(2, "0")}` }] })));
      const ok = await runRaw(raws, attach({ id: VN_BLUE.id }), 4);
      assert.is(ok.errors, 0);
      assert.is(ok.lat.length, 75, "every request answered once");
      // held by the NVE as attached: each VNIC's binding is there
      assert.is(nve.svc.core.viewHv("hv-2").vnics.length, 25);
      // a VN this NVE does not serve: every answer is a refusal (ok:false), each counted
      const refused = await runRaw(raws, attach({ id: 4242 }), 4);
      assert.is(refused.errors, 75);
      assert.is(refused.lat.length, 75);
      // detached again (shutdown): answered ok, nothing left
      const detach = raws.map((_, h) => Array.from({ length: 25 }, (_, i) => JSON.stringify({ id: String(i), op: "vnic.deactivate", vnic: vnic(h, i), reason: "shutdown" })));
      assert.is((await runRaw(raws, detach, 4)).errors, 0);
      assert.is(nve.svc.core.viewHv("hv-2").vnics.length, 0);
    } finally {
      await Promise.all(raws.map((r) => r.client.endAsync(true)));
      await nve.stop();
      await b.close();
    }
  });
}

test.run();
