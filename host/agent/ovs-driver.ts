// The agent's Open vSwitch driver: what a KVM host with OVS needs when the NVE
// returns a tag. RFC 8394 Req-7: the tag is negotiated per VN on the NVE port
// and "locally significant"; the hypervisor's bridge must then put exactly that
// 802.1Q tag on the VM's frames toward the NVE and take it off the way back.
// In OVS that is the VM port's `tag` (an access port); the uplink to the NVE is
// a trunk port.
//
// API (for the agent, `nvedge agent run`):
//
//   setPortTag(ovsDb: string | undefined, port: string, tag: number): Promise<void>
//       makes `port` an access port of VLAN `tag` (1..4094) and lets it forward.
//   clearPortTag(ovsDb: string | undefined, port: string): Promise<void>
//       parks `port`: VLAN 4095 (PARKING_VLAN) and `protected`, so nothing it
//       sends reaches the trunk or another parked port (call on detach/disconnect).
//   getPortTag(ovsDb: string | undefined, port: string): Promise<number | undefined>
//       the port's current tag (undefined when it has none).
//   ovsDbFromEnv(): string | undefined   — $NVEDGE_OVS_DB (what `nvedge lab demo` sets per hypervisor)
//
//   ovsDb: what `ovs-vsctl --db=` takes: "unix:/path/db.sock" or "tcp:IP:PORT";
//          a bare absolute path means "unix:PATH"; undefined means the system
//          OVS (/var/run/openvswitch/db.sock).
//   port:  the OVS port (= the VM's tap/veth name, e.g. "vnet3" under libvirt).
//   Errors: OvsDriverError with one line naming the port, tag or database at
//   fault; a failed call changes nothing (one ovs-vsctl transaction).
//
// ovs-vsctl returns once ovs-vswitchd has taken the new configuration; the
// flows it already cached in its datapath follow when its revalidator runs,
// normally within milliseconds (found by testing: under load, a few hundred).
//
// The uplink must not carry the parking VLAN: the lab sets the trunk port's
// `trunks` to 1..4094 (TRUNK_VLANS); a real host does the same once.
import { shAsync, CommandError } from "../sys/sh.js";

export class OvsDriverError extends Error {}

/** 802.1Q VID 4095 is reserved (IEEE 802.1Q, STANDARDS.md): never a negotiated tag, so a safe place to park a port. */
export const PARKING_VLAN = 4095;
/** The VLANs an uplink carries: every valid tag, not the parking VLAN (ovs-vsctl wants the list). */
export const TRUNK_VLANS = Array.from({ length: 4094 }, (_, i) => i + 1).join(",");

const PORT_RE = /^[A-Za-z0-9._:@-]{1,255}$/;

function dbArg(ovsDb: string | undefined): string[] {
  if (ovsDb === undefined || ovsDb === "") return [];
  if (ovsDb.startsWith("/")) return [`--db=unix:${ovsDb}`];
  if (!/^(unix|tcp|ssl):.+/.test(ovsDb)) throw new OvsDriverError(`OVS database "${ovsDb}": expected unix:PATH, tcp:IP:PORT, ssl:IP:PORT or an absolute path`);
  return [`--db=${ovsDb}`];
}

function checkPort(port: string): void {
  if (typeof port !== "string" || !PORT_RE.test(port)) throw new OvsDriverError(`OVS port ${JSON.stringify(port)}: not a valid port name`);
}

async function vsctl(ovsDb: string | undefined, args: string[]): Promise<string> {
  const argv = ["ovs-vsctl", ...dbArg(ovsDb), "--timeout=5", ...args];
  try {
    return (await shAsync(argv, { timeoutMs: 8000 })).stdout;
  } catch (e) {
    const err = e as CommandError;
    const what = /no row "([^"]+)" in table Port/.exec(err.stderr ?? "");
    if (what) throw new OvsDriverError(`OVS port "${what[1]}" does not exist${ovsDb ? " in " + ovsDb : ""}`);
    if (/database connection failed|No such file or directory|Connection refused/.test(err.stderr ?? ""))
      throw new OvsDriverError(`OVS database ${ovsDb ?? "(system default)"} does not answer: ${(err.stderr ?? "").trim().split("\n").pop()}`);
    if (err.code === 127) throw new OvsDriverError("ovs-vsctl not found: install openvswitch-switch");
    throw new OvsDriverError(err.message);
  }
}

export async function setPortTag(ovsDb: string | undefined, port: string, tag: number): Promise<void> {
  checkPort(port);
  if (!Number.isInteger(tag) || tag < 1 || tag > 4094) throw new OvsDriverError(`tag ${JSON.stringify(tag)} for OVS port "${port}": an 802.1Q VID is 1..4094 (PROTOCOL.md §2 tag)`);
  // One transaction: the tag and the release from parking change together.
  await vsctl(ovsDb, ["set", "Port", port, `tag=${tag}`, "vlan_mode=access", "protected=false"]);
}

export async function clearPortTag(ovsDb: string | undefined, port: string): Promise<void> {
  checkPort(port);
  await vsctl(ovsDb, ["set", "Port", port, `tag=${PARKING_VLAN}`, "vlan_mode=access", "protected=true"]);
}

export async function getPortTag(ovsDb: string | undefined, port: string): Promise<number | undefined> {
  checkPort(port);
  const out = (await vsctl(ovsDb, ["get", "Port", port, "tag"])).trim();
  return out === "[]" || out === "" ? undefined : Number(out);
}

export function ovsDbFromEnv(): string | undefined {
  return process.env.NVEDGE_OVS_DB || undefined;
}
