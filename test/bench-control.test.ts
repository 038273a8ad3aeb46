// The control bench's reading of the NVE's own pauses (bench/control.ts,
// issue 15 "paced p99"): the GC pauses and event-loop delays the paced rows
// report come from node's monitors as prom-client exports them on
// `--metrics` (prefix nvedge_process_). Read from a real registry here, so a
// change of prom-client's names or format fails this test instead of leaving
// the rows' columns at zero.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Registry, collectDefaultMetrics } from "prom-client";
import { parsePauses, pausesIn } from "../bench/control.js";

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

test.run();
