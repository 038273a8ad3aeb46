// Schema migrations of the LMDB store (issue 4: "a schema version with a
// migration path"). MIGRATIONS[N] upgrades a store at version N to N+1; LmdbStore
// runs each step in one synchronous LMDB transaction together with writing
// N+1 to meta, so an upgrade interrupted by a crash leaves the store at N and
// is simply redone at the next start.
//
// Version 0 is the first on-disk layout: every record in LMDB's main (unnamed)
// database under `${collection}/${key}`, with `meta/schemaVersion` = 0. Version 1
// gives each collection its own named sub-database (lmdb-js usage, STYLE.md), so
// a collection is listed without scanning the others.
import type { Database, RootDatabase } from "lmdb";
import { COLLECTIONS, type CollectionName } from "./store.js";

export interface MigrationCtx {
  root: RootDatabase;
  /** A named sub-database (created if missing), inside the migration's transaction. */
  db(name: CollectionName): Database;
}
export type Migration = (m: MigrationCtx) => void;

const V0_VERSION_KEY = "meta/schemaVersion";

/** The version of a pre-sub-database store (version 0), or undefined when `rootKeys` are not one. */
export function detectLegacyVersion(root: RootDatabase, rootKeys: string[]): unknown {
  if (!rootKeys.includes(V0_VERSION_KEY)) return undefined;
  return root.get(V0_VERSION_KEY);
}

export const MIGRATIONS: Record<number, Migration> = {
  0: ({ root, db }) => {
    for (const k of [...root.getKeys()].map(String)) {
      const slash = k.indexOf("/");
      if (slash <= 0) continue; // a named database's own entry
      const c = k.slice(0, slash) as CollectionName;
      if (!COLLECTIONS.includes(c)) throw new Error(`version 0 store: record ${JSON.stringify(k)} of unknown collection "${c}"`);
      const key = k.slice(slash + 1);
      if (k !== V0_VERSION_KEY) db(c).putSync(key, root.get(k));
      root.removeSync(k);
    }
  },
};

/** Writes records in the version 0 layout (for tests: the fixture a migration starts from). */
export function writeV0(root: RootDatabase, records: [CollectionName, string, unknown][]): void {
  root.transactionSync(() => {
    root.putSync(V0_VERSION_KEY, 0);
    for (const [c, k, v] of records) root.putSync(`${c}/${k}`, v);
  });
}
