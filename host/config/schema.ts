// JSON schema of the configuration file (INTERFACES.md), validated with ajv.
// Formats follow PROTOCOL.md §2: identifiers, MACs, tags 1..4094, VN ids 1..2^24-1.
import { BROKER_URL_PATTERN } from "../domain/broker-url.js";
export const ID = "^[A-Za-z0-9._-]{1,64}$";
export const MAC = "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$";
export const UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
const ip = { type: "string", minLength: 2, maxLength: 49 };
const vnRef = { anyOf: [{ type: "integer", minimum: 1, maximum: 16777215 }, { type: "string", minLength: 1, maxLength: 64 }] };

export const profileSchema = {
  type: "object",
  additionalProperties: false,
  required: ["encap"],
  properties: {
    encap: { enum: ["vxlan", "geneve", "nvgre"] },
    service: { enum: ["l2", "l3"], default: "l2" },
    // service "l3" (PROTOCOL.md §5): the anycast gateway and the routing domain (host/config/l3.ts checks them)
    gateway: { type: "object", additionalProperties: false, required: ["ips", "mac"], properties: {
      ips: { type: "array", minItems: 1, maxItems: 16, items: { type: "string", minLength: 2, maxLength: 53 } },
      mac: { type: "string", pattern: MAC } } },
    l3domain: { type: "integer", minimum: 1, maximum: 16777215 },
    mtu: { type: "integer", minimum: 68, maximum: 9000, default: 1500 },
    portSecurity: { type: "boolean", default: false },
    arpSuppress: { type: "boolean", default: false },
    learn: { enum: ["explicit", "glean"], default: "explicit" },
    // learn: glean (PROTOCOL.md §5); ranges checked with the rules below (host/dataplane/acl.ts learnProblems)
    learnAgeMs: { type: "integer" },
    maxLearnedPerPort: { type: "integer" },
    qos: { type: "object", additionalProperties: false, properties: {
      pcp: { type: "integer", minimum: 0, maximum: 7 }, dscp: { type: "integer", minimum: 0, maximum: 63 },
      rateMbps: { type: "number" }, burstKb: { type: "number" } } },
    // The rules' shapes are checked by host/dataplane/acl.ts compileAcl (every
    // validator calls it), which names the key at fault: acl[2].dstPort.
    acl: { type: "array", items: { type: "object" } },
    aclDefault: { enum: ["allow", "deny"] },
  },
} as const;

export const configSchema = {
  type: "object",
  additionalProperties: false,
  required: ["nve", "underlay"],
  properties: {
    nve: { type: "string", pattern: ID },
    broker: { type: "string", pattern: BROKER_URL_PATTERN },
    underlay: {
      type: "object", additionalProperties: false, required: ["port", "ip", "mac"],
      properties: {
        port: { type: "string", minLength: 1, maxLength: 15 },
        ip,
        mac: { type: "string", pattern: MAC },
        gatewayMac: { type: "string", pattern: MAC },
        routerMac: { type: "string", pattern: MAC }, // the inner source MAC of routed frames (L3 service); default `mac`
        gateway: ip, // the next hop, resolved by ARP/ND (issue 11)
        vlan: { type: "integer", minimum: 1, maximum: 4094 }, // a tagged uplink (INTERFACES.md)
        // encap TCP super-frames sent whole with UDP-tunnel GSO through a tap (auto: when the kernel can; INTERFACES.md)
        tunnelGso: { enum: ["auto", "off"] },
        udpPort: { type: "integer", minimum: 1, maximum: 65535, default: 4789 },
        genevePort: { type: "integer", minimum: 1, maximum: 65535, default: 6081 },
      },
    },
    ports: { type: "array", default: [], items: {
      type: "object", additionalProperties: false, required: ["name"],
      properties: { name: { type: "string", minLength: 1, maxLength: 15 },
                    // An entry is an {hv}, or { id, vns } narrowing the port's `vns` for that
                    // {hv} (INTERFACES.md; PROTOCOL.md §2 Authority, seed §5).
                    hypervisors: { type: "array", default: [], items: { anyOf: [
                      { type: "string", pattern: ID },
                      { type: "object", additionalProperties: false, required: ["id"],
                        properties: { id: { type: "string", pattern: ID }, vns: { type: "array", maxItems: 4096, items: vnRef } } }] } },
                    vns: { type: "array", maxItems: 4096, items: vnRef } } } },
    vns: { type: "array", default: [], items: {
      type: "object", additionalProperties: false, required: ["id", "vni", "profile"],
      properties: { id: { type: "integer", minimum: 1, maximum: 16777215 },
                    name: { type: "string", pattern: UUID }, alias: { type: "string", minLength: 1, maxLength: 64 },
                    vni: { type: "integer", minimum: 1, maximum: 16777215 }, profile: profileSchema } } },
    vnics: { type: "array", default: [], items: {
      type: "object", additionalProperties: false, required: ["vnic", "port", "vns"],
      properties: { vnic: { type: "string", pattern: UUID }, port: { type: "string" },
                    state: { enum: ["active", "associated"], default: "active" },
                    vns: { type: "array", minItems: 1, items: {
                      type: "object", additionalProperties: false, required: ["vn", "tag", "addrs"],
                      properties: { vn: vnRef, tag: { type: "integer", minimum: 1, maximum: 4094 },
                                    addrs: { type: "array", minItems: 1, items: {
                                      type: "object", additionalProperties: false, required: ["mac"],
                                      properties: { mac: { type: "string", pattern: MAC }, ips: { type: "array", items: ip } } } } } } } } } },
    remotes: { type: "array", default: [], items: {
      type: "object", additionalProperties: false, required: ["nve", "ip"],
      properties: { nve: { type: "string", pattern: ID }, ip,
                    routerMac: { type: "string", pattern: MAC }, // its router MAC, as its `vtep` record publishes it (PROTOCOL.md §6)
                    vns: { type: "array", default: [], items: vnRef },
                    addrs: { type: "array", default: [], items: {
                      type: "object", additionalProperties: false, required: ["vn", "mac"],
                      properties: { vn: vnRef, mac: { type: "string", pattern: MAC }, ips: { type: "array", items: ip } } } } } } },
    // routing domains and their L3 VNIs (INTERFACES.md, PROTOCOL.md §6 `l3domain`)
    l3domains: { type: "array", default: [], maxItems: 1024, items: {
      type: "object", additionalProperties: false, required: ["id", "vni"],
      properties: { id: { type: "integer", minimum: 1, maximum: 16777215 }, vni: { type: "integer", minimum: 1, maximum: 16777215 } } } },
    timers: { type: "object", additionalProperties: false, default: {},
      properties: { holdMs: { type: "integer", minimum: 0, default: 10000 },
                    agentHoldMs: { type: "integer", minimum: 0, default: 30000 },
                    tagQuarantineMs: { type: "integer", minimum: 0, default: 5000 } } },
    limits: { type: "object", additionalProperties: false, default: {},
      // Per-{hv} limits, on by default (PROTOCOL.md §2 Authority, INTERFACES.md `limits`).
      properties: { maxPayload: { type: "integer", minimum: 1024, default: 262144 },
                    ratePerSecond: { type: "number", minimum: 0, default: 200 },
                    burst: { type: "integer", minimum: 0, default: 400 },
                    maxSyncChunks: { type: "integer", minimum: 1, default: 64 },
                    maxVnicsPerHv: { type: "integer", minimum: 1, default: 4096 },
                    maxAddrsPerVnic: { type: "integer", minimum: 1, default: 256 },
                    maxPrefixesPerHv: { type: "integer", minimum: 0, default: 64 },
                    minPrefixLen: { type: "object", additionalProperties: false, default: {},
                      properties: { ipv4: { type: "integer", minimum: 1, maximum: 32, default: 8 },
                                    ipv6: { type: "integer", minimum: 1, maximum: 128, default: 32 } } } } },
    auth: { type: "object", additionalProperties: false, properties: {
      passwordFile: { type: "string" }, aclFile: { type: "string" },
      tls: { type: "object", additionalProperties: false, required: ["cert", "key", "ca"],
             properties: { cert: { type: "string" }, key: { type: "string" }, ca: { type: "string" } } } } },
    // The mapping authority (PROTOCOL.md §6): present = the NVE uses it (issue 6).
    // `id` is its identity for the embedded broker's ACL (the only writer of
    // nvo3/v1/ima/), `operators` the identities allowed to change its catalog.
    ima: { type: "object", additionalProperties: false, properties: {
      id: { type: "string", pattern: ID, default: "ima" },
      operators: { type: "array", default: [], items: { type: "string", pattern: ID } } } },
    // Prometheus /metrics, /healthz, /readyz (issue 13); --metrics HOST:PORT wins.
    metrics: { type: "object", additionalProperties: false, properties: {
      listen: { type: "string", pattern: "^(\\[[0-9A-Fa-f:.]+\\]|[^:\\[\\]]+):[0-9]{1,5}$" } } },
    // Logging (issue 13); --log-level / --log-format win; level is re-read on reload.
    log: { type: "object", additionalProperties: false, properties: {
      level: { enum: ["fatal", "error", "warn", "info", "debug", "trace", "silent"] }, format: { enum: ["json", "text"] } } },
  },
} as const;
