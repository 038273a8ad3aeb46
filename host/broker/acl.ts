// The topic ACL of PROTOCOL.md §1 and §6, as pure data plus the matching
// rules. One module feeds both the embedded broker (host/broker/embedded.ts)
// and the generator of Mosquitto's acl_file (host/cli/mosquitto-acl.ts), so
// the two brokers cannot drift apart; test/broker.test.ts runs one table of
// topics through both.
//
// Semantics follow Mosquitto's acl_file, because that is what the generated
// file must reproduce:
// - every identity gets the agent rules (Mosquitto `pattern` lines apply to all
//   users, "even if the user keyword has previously been given", mosquitto.conf(5));
//   identities listed as NVE, IMA or operator get their role's rules on top;
// - an access is granted when any rule of the right kind grants it; there are
//   no deny rules (a Mosquitto `deny` would also deny reads of the same topic).
//
// Issue 10 (tenant isolation) narrows the rules to what the deployment names:
// - `%n` stands for each configured NVE: an agent writes requests and its
//   retained status only under NVE names that exist, so it cannot park
//   retained messages under invented names (unbounded broker memory);
// - `%h` stands for each hypervisor on the NVE's own ports (from its
//   configuration, `hypervisors`): an NVE answers and sends events only to
//   them. Where the NVE's list is not known, `%h` is `+` (any hypervisor);
// - `retain` marks the only topics where a retained message is accepted, and
//   `maxBytes` bounds a payload (the agents' status: a few bytes of JSON).
//   The embedded broker enforces both; Mosquitto's acl_file cannot express
//   them (etc/mosquitto/README.md says what bounds them there).

/** PROTOCOL.md §1: identifiers in topics match this. */
export const IDENTITY_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function isValidIdentity(id: unknown): id is string {
  return typeof id === "string" && IDENTITY_RE.test(id);
}

export type Access = "read" | "write";
/**
 * `%u` stands for the identity, as in Mosquitto's `pattern` lines; `%n` for
 * each configured NVE; `%h` for each hypervisor on the NVE's ports.
 */
export interface AclRule { access: Access; topic: string; retain?: boolean; maxBytes?: number }

/** An agent's retained status (PROTOCOL.md §1: `{"state":"online"}`) never needs more. */
export const MAX_STATUS_BYTES = 1024;

export type Role = "agent" | "nve" | "ima" | "operator";

export const ROLE_RULES: Record<Role, readonly AclRule[]> = {
  // PROTOCOL.md §1: an agent {hv} writes only its request and status topics
  // and reads only its own tree and the NVEs' retained status.
  agent: [
    { access: "write", topic: "nvo3/v1/nve/%n/req/%u" },
    { access: "write", topic: "nvo3/v1/nve/%n/status/%u", retain: true, maxBytes: MAX_STATUS_BYTES },
    { access: "read", topic: "nvo3/v1/hv/%u/#" },
    { access: "read", topic: "nvo3/v1/nve/+/status" },
  ],
  // An NVE serves its own request tree, answers the agents on its own ports
  // (issue 10: generated from its configuration's ports[].hypervisors), and is
  // an IMA client (§6).
  nve: [
    { access: "read", topic: "nvo3/v1/nve/%u/#" },
    { access: "write", topic: "nvo3/v1/hv/%h/rsp" },
    { access: "write", topic: "nvo3/v1/hv/%h/evt" },
    { access: "write", topic: "nvo3/v1/nve/%u/status", retain: true },
    { access: "write", topic: "nvo3/v1/ima/req/%u" },
    { access: "read", topic: "nvo3/v1/ima/rsp/%u" },
    { access: "read", topic: "nvo3/v1/ima/vn/#" },
    { access: "read", topic: "nvo3/v1/ima/vtep/#" },
    { access: "read", topic: "nvo3/v1/ima/bind/#" },
    { access: "read", topic: "nvo3/v1/ima/l3domain/#" },
  ],
  // §6: the IMA is the only writer of the nvo3/v1/ima/ tree except the request
  // topics, which belong to their requesters. An acl_file cannot say "all but
  // req/" without also denying the IMA's reads of req/+, so the tree is listed
  // subtree by subtree (the IMA's own req topic is included: it is not another's).
  ima: [
    { access: "write", topic: "nvo3/v1/ima/vn/#", retain: true },
    { access: "write", topic: "nvo3/v1/ima/vtep/#", retain: true },
    { access: "write", topic: "nvo3/v1/ima/bind/#", retain: true },
    { access: "write", topic: "nvo3/v1/ima/l3domain/#", retain: true },
    { access: "write", topic: "nvo3/v1/ima/rsp/#" },
    { access: "write", topic: "nvo3/v1/ima/req/%u" },
    { access: "read", topic: "nvo3/v1/ima/req/+" },
    { access: "read", topic: "nvo3/v1/nve/+/status" },
    // Issue 15, high availability (host/ima/ha.ts): the instances' lease,
    // members and replicated records, and the public tree a standby mirrors.
    { access: "write", topic: "nvo3/v1/ima/ha/#", retain: true },
    { access: "read", topic: "nvo3/v1/ima/ha/#" },
    { access: "read", topic: "nvo3/v1/ima/vn/#" },
    { access: "read", topic: "nvo3/v1/ima/vtep/#" },
    { access: "read", topic: "nvo3/v1/ima/bind/#" },
  ],
  // §6: operators talk to the IMA on the same request topics as NVEs and see
  // the catalog.
  operator: [
    { access: "write", topic: "nvo3/v1/ima/req/%u" },
    { access: "read", topic: "nvo3/v1/ima/rsp/%u" },
    { access: "read", topic: "nvo3/v1/ima/vn/#" },
  ],
};

export interface AclRoles {
  nves?: readonly string[]; imas?: readonly string[]; operators?: readonly string[];
  /** per NVE, the hypervisors on its ports (its configuration's ports[].hypervisors) */
  hypervisors?: Readonly<Record<string, readonly string[]>>;
}

export function rolesOf(identity: string, roles: AclRoles): Role[] {
  const out: Role[] = ["agent"];
  if (roles.nves?.includes(identity)) out.push("nve");
  if ((roles.imas ?? ["ima"]).includes(identity)) out.push("ima");
  if (roles.operators?.includes(identity)) out.push("operator");
  return out;
}

export function substitute(topic: string, identity: string): string {
  return topic.split("/").map((level) => (level === "%u" ? identity : level)).join("/");
}

/**
 * A rule's topic for every value of its `%n` (each configured NVE) and `%h`
 * (each hypervisor of NVE `identity`, `+` when its list is not known); `%u`
 * stays for the caller. No NVE configured: no `%n` topic at all.
 */
export function expandTopic(topic: string, identity: string, roles: AclRoles): string[] {
  const levels = topic.split("/");
  if (levels.includes("%n")) return (roles.nves ?? []).map((n) => levels.map((l) => (l === "%n" ? n : l)).join("/"));
  if (levels.includes("%h")) {
    const hvs = roles.hypervisors?.[identity];
    return (hvs ?? ["+"]).map((h) => levels.map((l) => (l === "%h" ? h : l)).join("/"));
  }
  return [topic];
}

/** One granted write: its filter, and whether a retained message and how many bytes it may carry. */
export interface WriteGrant { topic: string; retain: boolean; maxBytes?: number }

/** The concrete read and write filters of one identity. */
export interface Grants { identity: string; read: string[]; write: string[]; writes: WriteGrant[] }

export function grantsFor(identity: string, roles: AclRoles): Grants {
  if (!isValidIdentity(identity)) throw new AclError(`identity ${JSON.stringify(identity)} does not match ${IDENTITY_RE}`);
  const g: Grants = { identity, read: [], write: [], writes: [] };
  for (const role of rolesOf(identity, roles)) {
    for (const r of ROLE_RULES[role]) {
      for (const x of expandTopic(r.topic, identity, roles)) {
        const t = substitute(x, identity);
        if (g[r.access].includes(t)) continue; // e.g. an IMA's status read is also an agent's
        g[r.access].push(t);
        if (r.access === "write") g.writes.push({ topic: t, retain: r.retain === true, ...(r.maxBytes !== undefined ? { maxBytes: r.maxBytes } : {}) });
      }
    }
  }
  return g;
}

export class AclError extends Error {}

/** Validates the role lists (every name an identity, PROTOCOL.md §1). */
export function checkRoles(roles: AclRoles): void {
  for (const key of ["nves", "imas", "operators"] as const) {
    for (const id of roles[key] ?? []) {
      if (!isValidIdentity(id)) throw new AclError(`${key}: identity ${JSON.stringify(id)} does not match ${IDENTITY_RE}`);
    }
  }
  for (const [nve, hvs] of Object.entries(roles.hypervisors ?? {})) {
    if (!isValidIdentity(nve)) throw new AclError(`hypervisors: NVE ${JSON.stringify(nve)} does not match ${IDENTITY_RE}`);
    for (const hv of hvs) if (!isValidIdentity(hv)) throw new AclError(`hypervisors of ${nve}: identity ${JSON.stringify(hv)} does not match ${IDENTITY_RE}`);
  }
}

/**
 * Issue 10: a client id is the identity itself or starts with `{identity}-`,
 * so no one can take over (or block) another identity's session by its id
 * [MQTT-3.1.3-2: the server identifies the session by the client id].
 */
export function clientIdAllowed(identity: string, clientId: string): boolean {
  return clientId === identity || (clientId.startsWith(`${identity}-`) && clientId.length <= 128 && !/[\u0000-\u001f]/.test(clientId));
}

/** A PUBLISH topic name: non-empty, no wildcards, no NUL [MQTT-4.7.3-1, MQTT-3.3.2-2]. */
export function isTopicName(t: string): boolean {
  return t.length > 0 && !/[+#\u0000]/.test(t);
}

/** A SUBSCRIBE filter: `#` only as the whole last level, `+` only as a whole level [MQTT-4.7.1-2, MQTT-4.7.1-3]. */
export function isTopicFilter(f: string): boolean {
  if (f.length === 0 || f.includes("\u0000")) return false;
  const levels = f.split("/");
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes("#") && (l !== "#" || i !== levels.length - 1)) return false;
    if (l.includes("+") && l !== "+") return false;
  }
  return true;
}

/** MQTT 3.1.1 §4.7: does `filter` match the topic name `topic`? */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match $-topics
  if (topic.startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true; // also matches the parent level ("a/#" matches "a")
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Is every topic matched by `filter` also matched by `grant`? A subscription is
 * allowed only then, so a wildcard cannot read beyond the grant (the same test
 * Mosquitto applies to SUBSCRIBE, `mosquitto_sub_matches_acl`).
 */
export function filterWithin(filter: string, grant: string): boolean {
  const f = filter.split("/");
  const g = grant.split("/");
  for (let i = 0; i < f.length; i++) {
    if (i < g.length && g[i] === "#") return true;
    if (f[i] === "#") return false; // f covers level i-1 and any depth; g needs level i to exist
    if (i >= g.length) return false;
    if (g[i] === "+") continue;     // f[i] is a literal or "+": both within "+"
    if (f[i] !== g[i]) return false; // f[i] "+" is wider than a literal
  }
  if (g.length === f.length) return true;
  return g.length === f.length + 1 && g[f.length] === "#";
}

/**
 * A set of filters compiled into a tree of topic levels, so that matching a
 * topic walks its levels once instead of splitting and comparing every
 * filter (issue 15: "ACL matching by lookup and not by list scan"). A broker
 * with many NVEs gives each agent two write filters per NVE (`%n`), and
 * every PUBLISH and every delivery is checked: the list scan was the largest
 * cost of the embedded broker under a flood (issue 10 soak). Same semantics
 * as topicMatches (MQTT 3.1.1 §4.7), which stays the reference.
 */
interface LevelNode { lit?: Map<string, LevelNode>; plus?: LevelNode; hash?: number[]; end?: number[] }
export class FilterIndex {
  private readonly root: LevelNode = {};
  constructor(filters: readonly string[]) {
    filters.forEach((f, i) => {
      let n = this.root;
      for (const l of f.split("/")) {
        if (l === "#") { (n.hash ??= []).push(i); return; }
        if (l === "+") n = n.plus ??= {};
        else {
          const lit = n.lit ??= new Map();
          let c = lit.get(l);
          if (!c) lit.set(l, (c = {}));
          n = c;
        }
      }
      (n.end ??= []).push(i);
    });
  }

  /** The indices (in the constructor's order, each once) of the filters that match `topic`. */
  match(topic: string): number[] {
    const out: number[] = [];
    const levels = topic.split("/");
    // [MQTT-4.7.2-1] a filter starting with a wildcard does not match $-topics
    this.walk(this.root, levels, 0, topic.startsWith("$"), out);
    return out.length > 1 ? [...new Set(out)].sort((a, b) => a - b) : out;
  }

  any(topic: string): boolean {
    return this.match(topic).length > 0;
  }

  private walk(n: LevelNode, t: string[], i: number, dollar: boolean, out: number[]): void {
    const top = i === 0 && dollar;
    if (n.hash && !top) out.push(...n.hash); // "a/#" matches "a" and below
    if (i === t.length) {
      if (n.end) out.push(...n.end);
      return;
    }
    const c = n.lit?.get(t[i]);
    if (c) this.walk(c, t, i + 1, dollar, out);
    if (n.plus && !top) this.walk(n.plus, t, i + 1, dollar, out);
  }
}

/** The compiled filters of a Grants (built at its first use; Grants are not changed after grantsFor). */
const indexes = new WeakMap<Grants, { read: FilterIndex; write: FilterIndex; writes: FilterIndex }>();
function indexOf(g: Grants): { read: FilterIndex; write: FilterIndex; writes: FilterIndex } {
  let x = indexes.get(g);
  if (!x) indexes.set(g, (x = { read: new FilterIndex(g.read), write: new FilterIndex(g.write), writes: new FilterIndex(g.writes.map((w) => w.topic)) }));
  return x;
}

export function canPublish(g: Grants, topic: string): boolean {
  return isTopicName(topic) && indexOf(g).write.any(topic);
}

/**
 * The whole PUBLISH check: null when allowed, else why not. A retained
 * message needs a grant marked `retain`, a payload within `maxBytes` of every
 * grant that matches (issue 10: bounded retained state at the broker).
 */
export function publishRefusal(g: Grants, topic: string, retain: boolean, bytes: number): string | null {
  if (!isTopicName(topic)) return "not a topic name";
  const hits = indexOf(g).writes.match(topic).map((i) => g.writes[i]);
  if (hits.length === 0) return "no write grant";
  if (retain && !hits.some((w) => w.retain)) return "retained messages are not accepted on this topic";
  const cap = hits.find((w) => w.maxBytes !== undefined && bytes > w.maxBytes);
  if (cap) return `payload of ${bytes} bytes exceeds the ${cap.maxBytes} allowed on this topic`;
  return null;
}

export function canRead(g: Grants, topic: string): boolean {
  return isTopicName(topic) && indexOf(g).read.any(topic);
}

export function canSubscribe(g: Grants, filter: string): boolean {
  return isTopicFilter(filter) && g.read.some((r) => filterWithin(filter, r));
}

/**
 * The hypervisors on an NVE's ports, from its configuration (INTERFACES.md
 * `ports[].hypervisors`: an id, or `{ "id", "vns" }`): the `%h` of its rules.
 */
export function hypervisorsOf(config: { ports: readonly { hypervisors?: readonly unknown[] }[] }): string[] {
  const out = new Set<string>();
  for (const p of config.ports) {
    for (const h of p.hypervisors ?? []) out.add(typeof h === "string" ? h : String((h as { id: unknown }).id));
  }
  return [...out];
}
