// `nvedge run`'s packet I/O workers started first (issue 15: process start to
// the first forwarded frame). When the store's directory holds a table image,
// the workers are started before the rest of the NVE is even loaded (the
// configuration's validation, the logger, the store, what the image's key is
// made of) and restore the image meanwhile, held before the first frame;
// run.ts then checks the image's key and lets them forward from it, or from
// empty tables that it programs (WorkerPool.go). Only the interfaces (with
// underlay.vlan and underlay.tunnelGso, which the workers act on) are read
// from the configuration here, unvalidated: run.ts compares them with the
// validated file's and starts the workers again if they differ.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { IMAGE_FILE } from "../paths.js";
import type { WorkerPool } from "../io/afpacket.js";
import type { NveConfig } from "../config/types.js";
import { phase } from "../sys/phase.js";

export interface EarlyWorkers {
  pool: Promise<WorkerPool>;
  imagePath: string;
  /** The interfaces, uplink VLAN and underlay.tunnelGso they were started with (compared with the validated configuration's). */
  config: Pick<NveConfig, "underlay" | "ports">;
  io: "afpacket" | "afxdp";
}

/**
 * The workers, started now, held; undefined when there is no image to
 * restore (then nothing is gained), or the start is not a plain one (memory
 * store, component loader, a YAML file, no packet I/O, a file that is not
 * even JSON: the ordinary path reports it). Resolves once the worker threads
 * are spawned (not ready): the caller loads the rest of the NVE after that,
 * so the workers start on the other core as early as they can rather than
 * after whatever the caller's imports would have put before them.
 */
export async function startWorkersEarly(o: { configFile: string; io?: string; workers?: number; storeDir: string; memoryStore: boolean; loader: string }): Promise<EarlyWorkers | undefined> {
  if (o.memoryStore || o.loader !== "core" || /\.ya?ml$/i.test(o.configFile)) return undefined;
  const imagePath = join(o.storeDir, IMAGE_FILE);
  if (!existsSync(imagePath)) return undefined;
  let raw: { ports?: unknown; underlay?: { port?: unknown; vlan?: unknown; tunnelGso?: unknown } };
  try { raw = JSON.parse(readFileSync(o.configFile, "utf8")); } catch { return undefined; }
  const ports = Array.isArray(raw?.ports) ? raw.ports as { name?: unknown }[] : [];
  const io = o.io ?? (ports.length > 0 ? "afpacket" : "none");
  if (io !== "afpacket" && io !== "afxdp") return undefined;
  if (typeof raw.underlay?.port !== "string" || (raw.underlay.vlan !== undefined && typeof raw.underlay.vlan !== "number")) return undefined;
  // the workers open their tunnel TX tap as the file says (tunnel-output.ts): "off" must hold from the first frame
  const tunnelGso = raw.underlay.tunnelGso;
  if (tunnelGso !== undefined && tunnelGso !== "auto" && tunnelGso !== "off") return undefined;
  if (!ports.every((p) => typeof p?.name === "string")) return undefined;
  const config = { underlay: { port: raw.underlay.port, vlan: raw.underlay.vlan, tunnelGso }, ports: ports.map((p) => ({ name: p.name })) } as Pick<NveConfig, "underlay" | "ports">;
  let pool: Promise<WorkerPool>;
  try {
    const [{ startAfPacket }, { thpUsable }] = await Promise.all([import("../io/afpacket.js"), import("../dataplane/memory.js")]);
    // startAfPacket spawns the workers before its first await
    pool = startAfPacket({ config, workers: o.workers, io, dataplane: { hugePages: thpUsable(), loader: "core", imagePath }, hold: true, stagger: true });
  } catch (e) {
    pool = Promise.reject(e);
  }
  pool.catch(() => undefined); // run.ts reports a failure when it awaits the pool (or starts again)
  return { pool, config, io, imagePath };
}

/** The same interfaces, in the same order, with the same uplink VLAN and encap super-frame output (underlay.tunnelGso). */
export function sameInterfaces(a: Pick<NveConfig, "underlay" | "ports">, b: Pick<NveConfig, "underlay" | "ports">): boolean {
  const names = (c: typeof a) => JSON.stringify([c.underlay.port, c.underlay.vlan ?? 0, c.underlay.tunnelGso ?? "auto", ...c.ports.map((p) => p.name)]);
  return names(a) === names(b);
}

/**
 * Releases the early workers to forward from the image they restored, before
 * the configuration is even validated and before the store is loaded, when
 * the image is keyed by this very configuration file (its SHA-256:
 * dp-image.ts configFileKey), the store's last transaction (read from its
 * data file: host/store/lmdb-meta.ts, without loading LMDB), its schema
 * version (a store this build would upgrade moves on at open), this module
 * and host code and the default layout; every worker must have restored it
 * whole. The caller holds the store directory's lock (lockStoreDir), so no
 * other NVE writes the store meanwhile. Then run.ts still checks the whole
 * key once the file is validated and the store open. False (nothing done;
 * run.ts decides and logs as usual) when anything differs or cannot be read.
 */
export async function earlyGo(o: { early: EarlyWorkers; storeDir: string; configFile: string }): Promise<boolean> {
  try {
    const [{ checkImage, keyDifference, fileHash }, { imageKeyOf }, { lmdbLastTxnId }, { STORE_SCHEMA_VERSION }] = await Promise.all([
      import("../dataplane/image.js"), import("../dataplane/load.js"), import("../store/lmdb-meta.js"), import("../store/store.js")]);
    const txnId = lmdbLastTxnId(o.storeDir);
    if (txnId === undefined) return false;
    const img = checkImage({ path: o.early.imagePath });
    const { config: _static, ...have } = img.meta.key;
    if (!have.configFile || keyDifference(have, { ...imageKeyOf({}), txnId, storeSchema: STORE_SCHEMA_VERSION, configFile: fileHash(o.configFile) })) return false;
    phase("run: early key checked");
    const pool = await o.early.pool;
    phase("run: every worker restored");
    // worker 0 alone is up (afpacket.ts stagger); the others restore the same file and must match it to keep it
    const r = pool.images[0];
    if (!r || !("key" in r) || keyDifference(r.key, img.meta.key)) return false;
    pool.go(true);
    return true;
  } catch {
    return false;
  }
}
