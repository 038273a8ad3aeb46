// The agent's port driver: what the hypervisor's bridge must do with the tag
// the NVE returns. RFC 8394 Req-7: the tag is negotiated per VN on the NVE port
// and locally significant; the bridge between the VM and the NVE must put
// exactly that 802.1Q tag on the VM's frames (and take it off the way back),
// and a VM that left the VN must not reach the trunk any more.
//
// - OvsPortDriver: Open vSwitch, the VM's port becomes an access port of the
//   tag; cleared, it is parked (VLAN 4095 + protected), see
//   host/agent/ovs-driver.ts for the ovs-vsctl transactions.
// - noPortDriver: no bridge to drive (no OVS database configured; the
//   hypervisor tags by other means, or a test of the protocol alone).
import { clearPortTag, setPortTag } from "./ovs-driver.js";

export interface PortDriver {
  /** For logs and error messages, e.g. "OVS unix:/run/openvswitch/db.sock". */
  readonly name: string;
  /** false: nothing to drive; the agent then skips all driver bookkeeping. */
  readonly enabled: boolean;
  /** The VM's port carries `tag` (1..4094) toward the NVE. */
  setTag(port: string, tag: number): Promise<void>;
  /** The VM's port no longer reaches the NVE. */
  clearTag(port: string): Promise<void>;
}

/** A name ovs-vsctl takes as a port (and a Linux interface name fits in it); checked before anything is sent. */
export const PORT_NAME_RE = /^[A-Za-z0-9._:@-]{1,255}$/;

/** `--ovs-db` / $NVEDGE_OVS_DB: what `ovs-vsctl --db=` takes, or an absolute path to the socket. */
export function checkOvsDb(db: string): string | undefined {
  return db.startsWith("/") || /^(unix|tcp|ssl):.+/.test(db) ? undefined : `OVS database "${db}": expected unix:PATH, tcp:IP:PORT, ssl:IP:PORT or an absolute path`;
}

export class OvsPortDriver implements PortDriver {
  readonly enabled = true;
  readonly name: string;
  /** `db` undefined: the system OVS (/var/run/openvswitch/db.sock). */
  constructor(readonly db?: string) {
    this.name = `OVS ${db ?? "(system database)"}`;
  }
  setTag(port: string, tag: number): Promise<void> {
    return setPortTag(this.db, port, tag);
  }
  clearTag(port: string): Promise<void> {
    return clearPortTag(this.db, port);
  }
}

export const noPortDriver: PortDriver = {
  name: "none",
  enabled: false,
  setTag: async () => {},
  clearTag: async () => {},
};

/** One line naming the port: the driver's own message when it does (OvsDriverError does), else the port plus the error. */
export function driverMessage(port: string, e: unknown): string {
  const m = ((e as Error)?.message ?? String(e)).trim().split("\n")[0];
  return m.includes(port) ? m : `port "${port}": ${m}`;
}
