// The answered requests' metrics (host/metrics/metrics.ts RequestStats):
// counted by hand and shown at scrape time (issue 15: prom-client's own inc
// and observe hash a label object per request), they must read exactly as
// prom-client's Counter and Histogram fed the same requests would.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Counter, Histogram, Registry } from "prom-client";
import { NveMetrics } from "../host/metrics/metrics.js";

/** The lines of one metric family, each series' labels sorted (the order of labels is not part of the format). */
function family(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(name)).map((l) => {
    const m = /^([a-z_]+)(?:\{(.*)\})? (.+)$/.exec(l);
    if (!m) return l;
    const labels = (m[2] ?? "").split(/,(?=[a-z_]+=")/).filter(Boolean).sort().join(",");
    return `${m[1]}{${labels}} ${m[3]}`;
  }).sort();
}

test("nvedge_control_requests_total and the duration histogram read as prom-client's own", async () => {
  const seen: [string, string, number][] = [
    ["vnic.attach", "ok", 0.0003], ["vnic.attach", "ok", 0.0005], ["vnic.attach", "ok", 0.003], ["vnic.attach", "address-conflict", 0.7],
    ["vnic.deactivate", "ok", 0.0001], ["hello", "ok", 3], ["no.such.op", "ok", 0.01], ["vnic.attach", "made-up-code", 0.02],
  ];
  const m = new NveMetrics({}, { nve: "nve-t" });
  for (const [op, code, s] of seen) m.observeRequest(op, code, s);
  // the reference: prom-client's metrics fed the same, with the labels observeRequest maps to ("other")
  const ref = new Registry();
  ref.setDefaultLabels({ nve: "nve-t" });
  const c = new Counter({ name: "nvedge_control_requests_total", help: "x", labelNames: ["op", "code"], registers: [ref] });
  const h = new Histogram({ name: "nvedge_control_request_duration_seconds", help: "x", labelNames: ["op"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [ref] });
  for (const [op, code, s] of seen) {
    const o = op === "no.such.op" ? "other" : op, k = code === "made-up-code" ? "other" : code;
    c.inc({ op: o, code: k });
    h.observe({ op: o }, s);
  }
  const got = await m.registry.metrics(), want = await ref.metrics();
  for (const name of ["nvedge_control_requests_total", "nvedge_control_request_duration_seconds"]) {
    assert.equal(family(got, name), family(want, name), name);
    assert.ok(family(got, name).length > 0, `${name} is exposed`);
  }
  assert.match(got, /# TYPE nvedge_control_request_duration_seconds histogram/);
  // the JSON form too (getMetricsAsJSON: the same values)
  const json = (await m.registry.getMetricsAsJSON()).find((x) => x.name === "nvedge_control_request_duration_seconds") as unknown as { values: { value: number; metricName: string; labels: Record<string, unknown> }[] };
  const count = json.values.find((v) => v.metricName.endsWith("_count") && v.labels.op === "vnic.attach");
  assert.is(count?.value, 5);
});

test.run();
