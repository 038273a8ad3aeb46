// One running NVE per store directory (issue 4: "a store directory ... locked by
// another running NVE gets a clear error"). LMDB's own lock.mdb lets several
// processes share an environment, so it cannot tell us that another NVE owns
// the directory; we take our own lock.
//
// Why not a pid file alone: "create with O_EXCL, else check the pid" races (two
// starters both see a stale pid, both delete it, both create) and is fooled by
// pid reuse. Node has no flock()/fcntl() without native code, so the lock is a
// Linux abstract-namespace unix socket named after the directory's real path:
// bind() is atomic and exclusive (EADDRINUSE for the second binder), and the
// kernel releases the name the moment the holder dies, SIGKILL included, so
// there is no stale lock to clean up and no race.
//
// Limit: abstract socket names are per network namespace. To also catch a
// second NVE started in another namespace on the same directory, the holder
// writes `nvedge.lock` (pid, process start time, since) and a starter refuses
// when that file names a live process (same pid and same start time, so a
// reused pid is not mistaken for the holder). That second check is a pid-file
// check with the usual race, only for the cross-namespace case; documented here.
import { createServer, type Server } from "node:net";
import { createHash } from "node:crypto";
import { readFileSync, realpathSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const LOCK_FILE = "nvedge.lock";

export class StoreLockedError extends Error {
  constructor(readonly dir: string, readonly holder: LockInfo | undefined) {
    super(`${dir}: the store is in use by another running NVE${holder ? ` (pid ${holder.pid}, since ${new Date(holder.since).toISOString()})` : ""}; ` +
      "stop that NVE first, or give this one another --store directory");
  }
}

export interface LockInfo { pid: number; start: string; since: number }

/** The kernel's start time of a process (field 22 of /proc/PID/stat), to tell a reused pid from the holder. */
function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces and parentheses: fields after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function alive(info: LockInfo): boolean {
  if (info.pid === process.pid) return false;
  try {
    process.kill(info.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const start = procStart(info.pid);
  return start === undefined || start === info.start;
}

export function readLockInfo(dir: string): LockInfo | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dir, LOCK_FILE), "utf8")) as LockInfo;
    return typeof v.pid === "number" ? v : undefined;
  } catch {
    return undefined;
  }
}

export interface StoreLock { release(): Promise<void> }

/** Takes the exclusive lock of `dir` (which must exist) or throws StoreLockedError. */
export async function lockStoreDir(dir: string): Promise<StoreLock> {
  const real = realpathSync(dir);
  const name = "\0nvedge-store:" + createHash("sha256").update(real).digest("hex").slice(0, 40);
  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => {
      reject(e.code === "EADDRINUSE" ? new StoreLockedError(dir, readLockInfo(dir)) : new Error(`${dir}: cannot take the store lock: ${e.message}`));
    });
    server.listen(name, () => resolve());
  });
  server.unref(); // the lock must not keep the process alive
  const held = readLockInfo(dir);
  if (held && alive(held)) {
    server.close();
    throw new StoreLockedError(dir, held);
  }
  const mine: LockInfo = { pid: process.pid, start: procStart(process.pid) ?? "", since: Date.now() };
  const tmp = join(dir, `${LOCK_FILE}.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify(mine) + "\n", { mode: 0o600 });
  renameSync(tmp, join(dir, LOCK_FILE)); // atomic: a reader sees the old or the new holder, never half a file
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      const now = readLockInfo(dir);
      if (now && now.pid === mine.pid && now.start === mine.start) {
        try { unlinkSync(join(dir, LOCK_FILE)); } catch { /* already gone */ }
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
