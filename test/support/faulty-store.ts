// A Store whose commit or flush fails on demand (issue 17, failure injection):
// wraps a real store (memory or LMDB) and, when armed, makes its next write
// fail the way a full or failing disk makes it fail.
//   - "commit": the write is refused at once (transaction() / commit() reject
//     with ENOSPC or EIO); nothing reaches the inner store.
//   - "flush": for a pipelined store (Store.commit), the write is accepted and
//     visible, but `durable` rejects later, as an fdatasync that fails: the inner
//     store (the disk) never gets it. For transaction() it is a refusal, as
//     LmdbStore.transaction awaits the flush.
// `written` counts the writes the inner store took (what is on "disk").
import type { CollectionName, Collections, Store, StoreWriter } from "../../host/store/store.js";

export type FaultAt = "commit" | "flush";
export type FaultCode = "ENOSPC" | "EIO";

const MESSAGES: Record<FaultCode, string> = { ENOSPC: "no space left on device", EIO: "i/o error" };

export function faultError(code: FaultCode, at: FaultAt): Error {
  return Object.assign(new Error(`${code}: ${MESSAGES[code]}, ${at === "flush" ? "fdatasync" : "write"} (injected)`), { code });
}

/** A writer that reads through `inner` and keeps its writes to itself (a write that never reaches the disk). */
function scratchWriter(inner: Store): StoreWriter {
  const pending = new Map<string, unknown>();
  const DELETED = Symbol("deleted");
  const k = (c: string, key: string) => `${c}\u0000${key}`;
  return {
    get<C extends CollectionName>(c: C, key: string) {
      const v = pending.get(k(c, key));
      return (v === DELETED ? undefined : v ?? inner.get(c, key)) as Collections[C] | undefined;
    },
    list<C extends CollectionName>(c: C, prefix = "") {
      const m = new Map(inner.list(c, prefix));
      for (const [pk, v] of pending) {
        const [pc, key] = pk.split("\u0000");
        if (pc !== c || !key.startsWith(prefix)) continue;
        v === DELETED ? m.delete(key) : m.set(key, v as Collections[C]);
      }
      return [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    },
    put(c, key, value) { pending.set(k(c, key), structuredClone(value)); },
    del(c, key) { pending.set(k(c, key), DELETED); },
  };
}

export class FaultyStore implements Store {
  private armed: { at: FaultAt; code: FaultCode; after: number }[] = [];
  /** Writes the inner store took. */
  written = 0;
  /** Faults fired so far, in order. */
  fired: { at: FaultAt; code: FaultCode }[] = [];
  commit?: Store["commit"];

  constructor(readonly inner: Store) {
    // pipelined only when the inner store is (the core picks its path from `commit`'s presence)
    if (inner.commit) this.commit = (fn) => this.doCommit(fn);
  }

  get schemaVersion(): number {
    return this.inner.schemaVersion;
  }

  /** The write after `after` more successful ones fails at `at` with `code`. */
  failNext(at: FaultAt, code: FaultCode, after = 0): void {
    this.armed.push({ at, code, after });
  }

  private take(): { at: FaultAt; code: FaultCode } | undefined {
    const f = this.armed[0];
    if (!f) return undefined;
    if (f.after > 0) { f.after--; return undefined; }
    this.armed.shift();
    this.fired.push({ at: f.at, code: f.code });
    return f;
  }

  get<C extends CollectionName>(c: C, key: string): Collections[C] | undefined { return this.inner.get(c, key); }
  list<C extends CollectionName>(c: C, prefix?: string): [string, Collections[C]][] { return this.inner.list(c, prefix); }
  close(): Promise<void> { return this.inner.close(); }

  async transaction<T>(fn: (tx: StoreWriter) => T): Promise<T> {
    const f = this.take();
    if (f) throw faultError(f.code, f.at);
    const r = await this.inner.transaction(fn);
    this.written++;
    return r;
  }

  // Flushes complete in order (as LMDB's do): a later commit is durable only after the earlier ones,
  // and once a flush failed the disk is broken: every later write stays off it and fails too.
  private last: Promise<void> = Promise.resolve();
  private broken: Error | undefined;

  private async doCommit<T>(fn: (tx: StoreWriter) => T): Promise<{ result: T; durable: Promise<void> }> {
    const f = this.take();
    if (f?.at === "commit") throw faultError(f.code, "commit");
    if (f?.at === "flush") this.broken ??= faultError(f.code, "flush");
    let durable: Promise<void>;
    let result: T;
    if (this.broken) {
      const err = this.broken;
      result = fn(scratchWriter(this.inner));
      // the fdatasync fails a little later, as a real one would, after the caller moved on
      durable = this.last.then(() => new Promise<void>((_, reject) => setTimeout(() => reject(err), 5)));
    } else {
      const r = await this.inner.commit!(fn);
      result = r.result;
      durable = this.last.then(() => r.durable).then(() => { this.written++; });
    }
    this.last = durable.catch(() => {});
    durable.catch(() => {}); // the caller awaits it
    return { result, durable };
  }
}
