// The broker's resource limits (issue 10 "Broker hardening", "Unbounded
// memory"): one set of numbers for the embedded broker (host/broker/embedded.ts
// enforces them) and for the generated Mosquitto configuration
// (host/cli/mosquitto-conf.ts writes the equivalent options), so that no
// client can grow either broker's memory without bound.

export interface BrokerLimits {
  /** open connections, all identities together; one more is closed at once */
  maxConnections: number;
  /**
   * Sessions (client ids, connected or persistent) one identity may hold at a
   * time. Mosquitto, with `use_username_as_clientid`, holds exactly one.
   */
  maxSessionsPerIdentity: number;
  /** QoS 1 messages queued for one session (offline, or sent and not yet acknowledged); beyond, new ones are dropped for it */
  maxQueuedMessages: number;
  /** the same queue in payload bytes */
  maxQueuedBytes: number;
  /** a connection that has not completed CONNECT by then is closed */
  connectTimeoutMs: number;
}

export const DEFAULT_BROKER_LIMITS: Readonly<BrokerLimits> = Object.freeze({
  maxConnections: 4096,
  maxSessionsPerIdentity: 4,
  // An NVE restart makes every agent resync at once, and an IMA restart
  // queues every NVE's requests: both are bursts that must wait, not drop.
  maxQueuedMessages: 100_000,
  maxQueuedBytes: 32 * 1024 * 1024,
  connectTimeoutMs: 10_000,
});

export class BrokerLimitsError extends Error {}

/** The defaults overridden by `o`; every value a positive integer. */
export function brokerLimits(o: Partial<BrokerLimits> = {}): BrokerLimits {
  const l = { ...DEFAULT_BROKER_LIMITS, ...o };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isInteger(v) || v < 1) throw new BrokerLimitsError(`broker limits: ${k} ${JSON.stringify(v)} is not a positive integer`);
  }
  return l;
}
