// The NVE's neighbour cache on the underlay (issue 11): the next hop's MAC is
// resolved by the NVE itself with ARP (RFC 826) or neighbour discovery (RFC
// 4861), never taken from the kernel and never left as broadcast. The states
// and timers follow RFC 4861 §7.3.2 / Appendix C, which Linux applies to ARP
// too:
//
//   (absent) --want--> INCOMPLETE --reply--> REACHABLE --reachableMs--> STALE
//   INCOMPLETE --maxMulticast requests unanswered--> FAILED --retryMs--> INCOMPLETE
//   STALE (still wanted) --delayMs--> PROBE (unicast requests) --reply--> REACHABLE
//   PROBE --maxUnicast unanswered--> FAILED
//
// A reply for an address nobody asked for is not learned (counted as
// `unsolicited`: an ARP reply is no proof of anything we did not ask, RFC
// 5227 §1.1 on spoofing); a request from a neighbour already in the cache
// refreshes its MAC (RFC 826 "merge"). Time comes from an injected clock and
// tick() drives the timers, so the state machine is tested without waiting.

export type NeighbourState = "incomplete" | "reachable" | "stale" | "probe" | "failed";

export interface NeighbourEntry {
  ip: string;
  mac?: string;
  state: NeighbourState;
  /** When the entry entered its state (clock ms). */
  since: number;
  /** Requests sent in this state. */
  sent: number;
  /** Last time a request went out (clock ms). */
  lastSent: number;
}

export interface NeighbourCounters {
  requests: number;
  probes: number;
  replies: number;
  unsolicited: number;
  failures: number;
  changes: number;
}

export interface NeighbourOptions {
  now: () => number;
  /** Send a request for `ip`: broadcast / solicited-node multicast, or unicast to `mac` when probing. */
  send: (ip: string, unicastTo?: string) => void;
  /** The MAC for `ip` is now `mac` (undefined: lost, the entry failed). */
  onChange?: (ip: string, mac: string | undefined) => void;
  /** RFC 4861 §10: REACHABLE_TIME 30 s, RETRANS_TIMER 1 s, DELAY_FIRST_PROBE_TIME 5 s, MAX_*CAST_SOLICIT 3. */
  reachableMs?: number;
  retransMs?: number;
  delayMs?: number;
  maxMulticast?: number;
  maxUnicast?: number;
  /** How long a failed entry waits before resolution starts again. */
  retryMs?: number;
}

export type InputResult = "learned" | "confirmed" | "changed" | "unsolicited" | "ignored";

export class NeighbourCache {
  private readonly entries = new Map<string, NeighbourEntry>();
  readonly counters: NeighbourCounters = { requests: 0, probes: 0, replies: 0, unsolicited: 0, failures: 0, changes: 0 };
  private readonly o: Required<Omit<NeighbourOptions, "onChange">> & Pick<NeighbourOptions, "onChange">;

  constructor(opts: NeighbourOptions) {
    this.o = { reachableMs: 30_000, retransMs: 1_000, delayMs: 5_000, maxMulticast: 3, maxUnicast: 3, retryMs: 5_000, ...opts };
  }

  /** The next hop `ip` is needed: resolution starts unless it is already known or under way. */
  want(ip: string): void {
    if (this.entries.has(ip)) return;
    const now = this.o.now();
    const e: NeighbourEntry = { ip, state: "incomplete", since: now, sent: 0, lastSent: 0 };
    this.entries.set(ip, e);
    this.request(e, now);
  }

  /** No longer needed (a route went away): forgotten, with no onChange. */
  forget(ip: string): void { this.entries.delete(ip); }

  /** The MAC to use for `ip` now: reachable, stale or probing (RFC 4861 §7.3.3: a stale entry is still used). */
  mac(ip: string): string | undefined {
    const e = this.entries.get(ip);
    return e && e.state !== "incomplete" && e.state !== "failed" ? e.mac : undefined;
  }

  entry(ip: string): NeighbourEntry | undefined {
    const e = this.entries.get(ip);
    return e ? { ...e } : undefined;
  }

  list(): NeighbourEntry[] { return [...this.entries.values()].map((e) => ({ ...e })); }

  /**
   * An ARP packet or neighbour advertisement/solicitation from `ip` saying it
   * is at `mac`; `reply`: an answer (ARP reply, NA) rather than a request (ARP
   * request, NS with a source link-layer option).
   */
  input(ip: string, mac: string, reply: boolean): InputResult {
    const e = this.entries.get(ip);
    if (!e) {
      if (reply) this.counters.unsolicited++;
      return reply ? "unsolicited" : "ignored";
    }
    if (reply) this.counters.replies++;
    // a request only refreshes what we already hold (RFC 826 merge)
    else if (e.state === "incomplete" || e.state === "failed") return "ignored";
    const now = this.o.now();
    const old = e.state === "failed" ? undefined : e.mac;
    e.mac = mac;
    e.state = reply ? "reachable" : "stale";
    e.since = now;
    e.sent = 0;
    if (old === mac) return "confirmed";
    this.counters.changes++;
    this.o.onChange?.(ip, mac);
    return old === undefined ? "learned" : "changed";
  }

  /** Drives the timers; call it often (every retransMs at least). */
  tick(): void {
    const now = this.o.now();
    for (const e of this.entries.values()) {
      switch (e.state) {
        case "incomplete":
          if (now - e.lastSent < this.o.retransMs) break;
          if (e.sent >= this.o.maxMulticast) { this.fail(e, now); break; }
          this.request(e, now);
          break;
        case "reachable":
          if (now - e.since >= this.o.reachableMs) { e.state = "stale"; e.since = now; e.sent = 0; }
          break;
        case "stale":
          // every cache entry here is a next hop in use, so a stale one is probed
          if (now - e.since >= this.o.delayMs) { e.state = "probe"; e.since = now; e.sent = 0; this.probe(e, now); }
          break;
        case "probe":
          if (now - e.lastSent < this.o.retransMs) break;
          if (e.sent >= this.o.maxUnicast) { this.fail(e, now); break; }
          this.probe(e, now);
          break;
        case "failed":
          if (now - e.since >= this.o.retryMs) { e.state = "incomplete"; e.since = now; e.sent = 0; this.request(e, now); }
          break;
      }
    }
  }

  private request(e: NeighbourEntry, now: number): void {
    e.sent++;
    e.lastSent = now;
    this.counters.requests++;
    this.o.send(e.ip);
  }

  private probe(e: NeighbourEntry, now: number): void {
    e.sent++;
    e.lastSent = now;
    this.counters.probes++;
    this.o.send(e.ip, e.mac);
  }

  private fail(e: NeighbourEntry, now: number): void {
    const had = e.mac !== undefined && e.state !== "incomplete";
    e.state = "failed";
    e.since = now;
    e.sent = 0;
    this.counters.failures++;
    if (had) this.o.onChange?.(e.ip, undefined);
    e.mac = undefined;
  }
}
