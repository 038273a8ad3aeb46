// The IMA's persistent state in LMDB (issue 6: "its state is in LMDB"), used
// the lmdb-js way (STYLE.md): one named sub-database per collection,
// synchronous reads, and one asynchronous transaction per batch of requests,
// awaited before anything is published or answered (PROTOCOL.md §2).
//
// `pub` holds, per retained topic, the payload the broker acknowledged last.
// A restarted IMA compares it with the state and publishes only what differs,
// so it republishes nothing that did not change (issue 6).
import { open, type Database, type RootDatabase } from "lmdb";
import { privateDir, withPrivateUmask } from "../store/private.js";

export const IMA_SCHEMA_VERSION = 1;

export interface StoredVn { id: number; name: string; alias?: string; vni: number; profile: import("../domain/profile.js").VnProfile }
export interface StoredVtep { vn: number; nve: string; ip: string; routerMac?: string }
/** A routing domain (L3 service, PROTOCOL.md §6 `l3domain`) and its L3 VNI. */
export interface StoredL3Domain { id: number; vni: number }
/**
 * A MAC binding with its mobility history (RFC 7432 §15). A withdrawn binding
 * stays as a tombstone (`withdrawn`) so the next announcement continues its
 * sequence number; `moves` are the times of recent moves (duplicate detection).
 * `next` is the NVE that pre-associated the MAC (bind.prepare, issue 15).
 */
export interface StoredBind {
  vn: number; mac: string; nve: string; ip: string; ips: string[]; seq: number;
  moves: number[]; withdrawn?: boolean; frozen?: boolean; next?: { nve: string; ip: string };
}

export type ImaCollection = "vns" | "vteps" | "binds" | "pub" | "l3domains";
export interface ImaCollections { vns: StoredVn; vteps: StoredVtep; binds: StoredBind; pub: string; l3domains: StoredL3Domain }

export class ImaDbError extends Error {}

export interface ImaDb {
  /** true until markSeeded(): the catalog is then seeded from the configuration */
  readonly isNew: boolean;
  markSeeded(): Promise<void>;
  list<C extends ImaCollection>(c: C): [string, ImaCollections[C]][];
  /** Writes (value) or deletes (null) atomically; resolves once durable. */
  write(changes: { c: ImaCollection; key: string; value: unknown }[]): Promise<void>;
  close(): Promise<void>;
}

export function openImaDb(dir: string): ImaDb {
  try {
    privateDir(dir); // 0700, files 0600 (issue 10)
  } catch (e) {
    throw new ImaDbError(`store ${dir}: cannot create: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let root: RootDatabase;
  try {
    root = withPrivateUmask(() => open({ path: dir, compression: false }));
  } catch (e) {
    throw new ImaDbError(`store ${dir}: cannot open: ${(e as Error).message}`);
  }
  const meta = root.openDB({ name: "meta" });
  const found = meta.get("schema");
  if (found === undefined) meta.putSync("schema", IMA_SCHEMA_VERSION);
  else if (found !== IMA_SCHEMA_VERSION) {
    void root.close();
    throw new ImaDbError(`store ${dir}: IMA schema version ${JSON.stringify(found)} is not the supported version ${IMA_SCHEMA_VERSION}`);
  }
  const dbs: Record<ImaCollection, Database> = {
    vns: root.openDB({ name: "vns" }),
    vteps: root.openDB({ name: "vteps" }),
    binds: root.openDB({ name: "binds" }),
    pub: root.openDB({ name: "pub" }),
    l3domains: root.openDB({ name: "l3domains" }),
  };
  return {
    isNew: meta.get("seeded") === undefined,
    async markSeeded() {
      await meta.put("seeded", true);
    },
    list(c) {
      const out: [string, any][] = [];
      for (const { key, value } of dbs[c].getRange({})) out.push([String(key), value]);
      return out;
    },
    write(changes) {
      if (changes.length === 0) return Promise.resolve();
      return root.transaction(() => {
        for (const ch of changes) {
          if (ch.value === null || ch.value === undefined) dbs[ch.c].remove(ch.key);
          else dbs[ch.c].put(ch.key, ch.value);
        }
      }).then(() => undefined);
    },
    async close() {
      await root.close();
    },
  };
}
