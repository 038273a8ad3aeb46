// The underlay neighbour cache (host/underlay/neighbours.ts, issue 11): its
// state machine under an injected clock (RFC 4861 §7.3.2 timers), replies
// nobody asked for, a neighbour whose MAC changes, failure and retry.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NeighbourCache } from "../host/underlay/neighbours.js";

function rig(opts: Partial<ConstructorParameters<typeof NeighbourCache>[0]> = {}) {
  let t = 1_000;
  const sent: { ip: string; to?: string; at: number }[] = [];
  const changes: [string, string | undefined][] = [];
  const c = new NeighbourCache({ now: () => t, send: (ip, to) => sent.push({ ip, to, at: t }), onChange: (ip, mac) => changes.push([ip, mac]), ...opts });
  return { c, sent, changes, advance: (ms: number) => { t += ms; c.tick(); } };
}
const GW = "192.0.2.254", MAC1 = "02:00:00:00:01:fe", MAC2 = "02:00:00:00:02:fe";

test("want sends one broadcast request at once; a reply makes the entry reachable and tells the owner", () => {
  const { c, sent, changes } = rig();
  c.want(GW);
  assert.equal(sent, [{ ip: GW, to: undefined, at: 1000 }]);
  assert.is(c.entry(GW)!.state, "incomplete");
  assert.is(c.mac(GW), undefined, "no MAC before the reply: never a broadcast next hop");
  c.want(GW);
  assert.is(sent.length, 1, "asking again while resolving sends nothing more");
  assert.is(c.input(GW, MAC1, true), "learned");
  assert.is(c.entry(GW)!.state, "reachable");
  assert.is(c.mac(GW), MAC1);
  assert.equal(changes, [[GW, MAC1]]);
});

test("unanswered requests are retransmitted every retransMs, then the entry fails and resolution restarts after retryMs", () => {
  const { c, sent, advance, changes } = rig({ retransMs: 1000, maxMulticast: 3, retryMs: 5000 });
  c.want(GW);
  advance(999);
  assert.is(sent.length, 1, "not before retransMs");
  advance(1);
  advance(1000);
  assert.is(sent.length, 3);
  advance(1000);
  assert.is(c.entry(GW)!.state, "failed");
  assert.is(c.counters.failures, 1);
  assert.equal(changes, [], "nothing was known, nothing is lost");
  advance(4999);
  assert.is(sent.length, 3);
  advance(1);
  assert.is(c.entry(GW)!.state, "incomplete");
  assert.is(sent.length, 4);
});

test("reachable turns stale after reachableMs, is still used, then probed by unicast; a confirming reply needs no change", () => {
  const { c, sent, advance, changes } = rig({ reachableMs: 30_000, delayMs: 5000, retransMs: 1000 });
  c.want(GW);
  c.input(GW, MAC1, true);
  advance(29_999);
  assert.is(c.entry(GW)!.state, "reachable");
  advance(1);
  assert.is(c.entry(GW)!.state, "stale");
  assert.is(c.mac(GW), MAC1, "a stale entry is still used (RFC 4861 §7.3.3)");
  advance(5000);
  assert.is(c.entry(GW)!.state, "probe");
  assert.equal(sent.at(-1), { ip: GW, to: MAC1, at: 1000 + 35_000 }, "the probe is unicast to the MAC we hold");
  assert.is(c.input(GW, MAC1, true), "confirmed");
  assert.is(c.entry(GW)!.state, "reachable");
  assert.equal(changes, [[GW, MAC1]], "one change only: the first learning");
});

test("the next hop's MAC changing mid-stream: a reply with a new MAC replaces the old and is reported", () => {
  const { c, changes } = rig();
  c.want(GW);
  c.input(GW, MAC1, true);
  assert.is(c.input(GW, MAC2, true), "changed");
  assert.is(c.mac(GW), MAC2);
  assert.equal(changes, [[GW, MAC1], [GW, MAC2]]);
  assert.is(c.counters.changes, 2);
});

test("a probe nobody answers fails the entry and withdraws its MAC", () => {
  const { c, advance, changes } = rig({ reachableMs: 10, delayMs: 10, retransMs: 100, maxUnicast: 2 });
  c.want(GW);
  c.input(GW, MAC1, true);
  advance(10); // stale
  advance(10); // probe 1
  advance(100); // probe 2
  advance(100); // fail
  assert.is(c.entry(GW)!.state, "failed");
  assert.is(c.mac(GW), undefined);
  assert.equal(changes, [[GW, MAC1], [GW, undefined]]);
});

test("an ARP reply for an IP nobody asked for is not learned and is counted as unsolicited; a request only refreshes what is held", () => {
  const { c, changes } = rig();
  assert.is(c.input("192.0.2.77", MAC1, true), "unsolicited");
  assert.is(c.entry("192.0.2.77"), undefined);
  assert.is(c.counters.unsolicited, 1);
  assert.is(c.input("192.0.2.78", MAC1, false), "ignored", "a request from a stranger is not learned either");
  c.want(GW);
  assert.is(c.input(GW, MAC1, false), "ignored", "a request does not complete a resolution (only a reply does)");
  c.input(GW, MAC1, true);
  assert.is(c.input(GW, MAC2, false), "changed", "the neighbour's own request updates its MAC (RFC 826 merge)");
  assert.is(c.entry(GW)!.state, "stale");
  assert.equal(changes, [[GW, MAC1], [GW, MAC2]]);
});

test.run();
