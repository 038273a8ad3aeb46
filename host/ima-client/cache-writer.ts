// The write side of the NVE's IMA cache (issue 4; host/ima-client/cache.ts): what
// the IMA client learned (PROTOCOL.md §6: the VNs it serves, their flood lists,
// the remote bindings) is kept in the NVE's store, so a restarted NVE programs
// it before the IMA answers (NveCore.open reads it with cachedOps/cachedVns).
//
// The client is a reconciler whose state is its public maps, so the cache is
// written the same way: after the client programs the data plane, one debounced
// store transaction makes the cache equal to those maps (puts what differs,
// deletes what went). A VN stays cached until the IMA deletes it: the NVE's
// stored VNICs may name it.
import type { DataPlaneProgrammer, DpOp } from "../dataplane/ops.js";
import type { RemoteRecord, Store, VnRecord, VtepRecord } from "../store/store.js";
import { cacheRemote, cacheVn, cacheVtep, uncacheRemote, uncacheVn, uncacheVtep } from "./cache.js";
import { keys } from "../store/store.js";
import type { ImaClient } from "./client.js";

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export class ImaCacheWriter {
  client: ImaClient | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly store: Store, private readonly configured: Set<number>, private readonly log: (l: string) => void, private readonly delayMs = 100) {}

  /** The programmer to give the client: every change it programs schedules a cache write. */
  wrap(p: DataPlaneProgrammer): DataPlaneProgrammer {
    return { apply: async (ops: DpOp[]) => { await p.apply(ops); this.schedule(); } };
  }

  schedule(): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writing = this.writing.then(() => this.flush()).catch((e) => this.log(`ima cache: ${(e as Error).message}`));
    }, this.delayMs);
  }

  /** The IMA deleted a VN: its cached flood list and bindings go with it (seed §3.1). */
  async vnDeleted(vn: number): Promise<void> {
    await this.store.transaction((w) => uncacheVn(w, vn));
  }

  /** Makes the store's cache equal to what the client holds. */
  async flush(): Promise<void> {
    const c = this.client;
    if (!c) return;
    const served = new Set(c.view().served);
    const vns = new Map<string, VnRecord>();
    for (const v of served) {
      const r = c.vns.get(v);
      if (r && !this.configured.has(v)) vns.set(String(v), { id: r.id, vni: r.vni, profile: r.profile, ...(r.name ? { name: r.name } : {}), ...(r.alias ? { alias: r.alias } : {}) });
    }
    const vteps = new Map<string, VtepRecord>();
    for (const [vn, m] of c.vteps) if (served.has(vn)) for (const [nve, ip] of m) if (nve !== c.nve) vteps.set(keys.vtep(vn, nve), { vn, nve, ip });
    const remotes = new Map<string, RemoteRecord>();
    for (const [k, r] of c.records) {
      const i = k.indexOf("|");
      const vn = Number(k.slice(0, i)), mac = k.slice(i + 1);
      if (r.nve !== c.nve && served.has(vn)) remotes.set(keys.remote(vn, mac), { vn, mac, nve: r.nve, ip: r.ip, ips: [...r.ips], seq: r.seq });
    }
    await this.store.transaction((w) => {
      for (const [k, v] of vns) if (!same(w.get("vns", k), v)) cacheVn(w, v);
      for (const [k, v] of vteps) if (!same(w.get("vteps", k), v)) cacheVtep(w, v);
      for (const [k, v] of w.list("vteps")) if (!vteps.has(k)) uncacheVtep(w, v.vn, v.nve);
      for (const [k, v] of remotes) if (!same(w.get("remotes", k), v)) cacheRemote(w, v);
      for (const [k, v] of w.list("remotes")) if (!remotes.has(k)) uncacheRemote(w, v.vn, v.mac);
    });
  }

  /** Writes what is pending, then stops (before the store closes). */
  async close(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.writing = this.writing.then(() => this.flush()).catch((e) => this.log(`ima cache: ${(e as Error).message}`));
    }
    this.closed = true;
    await this.writing;
  }
}
