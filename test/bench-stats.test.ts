// The order statistics every bench row reports (bench/stats.ts): one
// definition of a p99 and a median, so that the latency, IMA, store, control,
// race and tcp rows in bench/README.md can be compared. Checked against the
// nearest-rank definition worked by hand and against a brute-force count.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { median, quantile } from "../bench/stats.js";

test("nearest rank: p99 of 1..100 is 99, p50 of two samples is the smaller, p100 is the largest", () => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // unsorted on purpose
  assert.is(quantile(xs, 0.99), 99);
  assert.is(quantile(xs, 0.5), 50);
  assert.is(quantile(xs, 1), 100);
  assert.is(quantile(xs, 0), 1);
  assert.is(quantile([7, 3], 0.5), 3);
  assert.ok(Number.isNaN(quantile([], 0.5)));
  assert.equal(xs[0], 100, "the input is not sorted in place");
});

test("the quantile is the smallest sample with at least q of the samples at or below it", () => {
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let n = 1; n <= 60; n++) {
    const xs = Array.from({ length: n }, () => Math.floor(rnd() * 20));
    const s = [...xs].sort((a, b) => a - b);
    for (const q of [0.01, 0.25, 0.5, 0.9, 0.99]) {
      const want = s.find((v) => s.filter((w) => w <= v).length >= q * n);
      assert.is(quantile(xs, q), want, `n=${n} q=${q}`);
      assert.is(quantile(s, q, true), want, `n=${n} q=${q}, sorted`);
    }
  }
});

test("median: the middle value, or the mean of the two middle values", () => {
  assert.is(median([5, 1, 3]), 3);
  assert.is(median([4, 1, 3, 2]), 2.5);
  assert.is(median([9]), 9);
  assert.ok(Number.isNaN(median([])));
});

test.run();
