// Topic names of nvo3-hv/1 (PROTOCOL.md §1). One place builds and parses them so
// the NVE, the agent and the broker ACL cannot disagree on a character.
export const ROOT = "nvo3/v1/";
export const IDENT = /^[A-Za-z0-9._-]{1,64}$/;

export const topics = {
  /** agent → NVE requests */
  req: (nve: string, hv: string) => `${ROOT}nve/${nve}/req/${hv}`,
  /** every request topic of one NVE (its subscription) */
  reqAll: (nve: string) => `${ROOT}nve/${nve}/req/+`,
  rsp: (hv: string) => `${ROOT}hv/${hv}/rsp`,
  evt: (hv: string) => `${ROOT}hv/${hv}/evt`,
  /** the NVE's retained status (bootId) */
  nveStatus: (nve: string) => `${ROOT}nve/${nve}/status`,
  /** an agent's retained status, read by the NVE for liveness (§3) */
  hvStatus: (nve: string, hv: string) => `${ROOT}nve/${nve}/status/${hv}`,
  hvStatusAll: (nve: string) => `${ROOT}nve/${nve}/status/+`,
};

/** Splits an NVE-side topic: returns the kind and the {hv} it concerns, or null. */
export function parseNveTopic(nve: string, topic: string): { kind: "req" | "status"; hv: string } | null {
  const base = `${ROOT}nve/${nve}/`;
  if (!topic.startsWith(base)) return null;
  const rest = topic.slice(base.length).split("/");
  if (rest.length !== 2) return null;
  if (rest[0] !== "req" && rest[0] !== "status") return null;
  if (!IDENT.test(rest[1])) return null;
  return { kind: rest[0] as "req" | "status", hv: rest[1] };
}

export function isIdent(s: string): boolean {
  return IDENT.test(s);
}
