// Files only the owner may read (issue 10 "Hygiene"): the stores (NVE and IMA
// LMDB environments, their lock file) hold every tenant's bindings, and the
// local control sockets drive the process. Folders 0700, files 0600, created
// that way rather than chmodded after the fact, so there is no window in
// which another local user can open them.
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { isMainThread } from "node:worker_threads";

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
/** The umask under which new files get at most 0600 and new folders 0700. */
export const PRIVATE_UMASK = 0o077;
/** For a unix socket (created 0777 & ~umask): 0600. */
export const SOCKET_UMASK = 0o177;

/**
 * Runs `fn` (synchronous: it creates files, binds a socket) under umask 077.
 * The umask is process-wide, and nothing else runs while `fn` does, so no
 * other file is created under it. A worker thread cannot change the umask
 * (Node refuses); there `fn` runs as is and the caller's chmod must do.
 */
export function withPrivateUmask<T>(fn: () => T, mask = PRIVATE_UMASK): T {
  if (!isMainThread) return fn();
  const old = process.umask(mask);
  try {
    return fn();
  } finally {
    process.umask(old);
  }
}

/**
 * Creates `dir` 0700 (and missing parents), or tightens an existing one and
 * the files directly in it to 0700/0600 (a store made by an older nvedge).
 */
export function privateDir(dir: string): void {
  const existed = existsSync(dir);
  withPrivateUmask(() => mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE }));
  if (!existed) return;
  if ((statSync(dir).mode & 0o777) !== PRIVATE_DIR_MODE) chmodSync(dir, PRIVATE_DIR_MODE);
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isFile() && (st.mode & 0o777 & ~PRIVATE_FILE_MODE) !== 0) chmodSync(p, PRIVATE_FILE_MODE);
  }
}
