// `nvedge run --config FILE [--broker URL] [--io none|afpacket] [--workers N] [--store DIR]`
// (INTERFACES.md): the data plane (in-process with --io none, AF_PACKET workers
// with --io afpacket), the store (LMDB in --store, default ./nvedge-data), the
// control plane on MQTT (the embedded broker on 127.0.0.1:1883 unless a broker
// is given), and the local admin socket `<store>/nvedge.sock` that `nvedge show`
// and operators use (host/control/admin.ts).
// The NVE's own MQTT password, when the broker wants one, comes from the
// environment variable NVEDGE_MQTT_PASSWORD (never from argv, which `ps` shows).
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError, parseOpts, required } from "./args.js";
import { loadConfig } from "../config/load.js";
import type { DataPlaneProgrammer } from "../dataplane/ops.js";
import type { Store } from "../store/store.js";

const HELP = `usage: nvedge run --config FILE [--broker URL] [--io none|afpacket] [--workers N] [--store DIR]
                  [--admin-socket PATH] [--listen HOST:PORT] [--mqtt 4|5] [--memory-store] [--broker-thread]
  --broker URL        an external broker; without it (and without "broker" in FILE) the embedded
                      broker listens on --listen (default 127.0.0.1:1883)
  --io none           control plane + in-process data plane, no packet I/O (default)
  --store DIR         LMDB store directory (default ./nvedge-data); --memory-store keeps state in memory only
  --admin-socket P    the local admin socket (default <store>/nvedge.sock)
  --broker-thread     run the embedded broker on its own thread (MQTT and the NVE on two cores)
  NVEDGE_MQTT_PASSWORD (env): the NVE's password when the broker requires one`;

export async function runCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, {
    config: { type: "string" }, broker: { type: "string" }, io: { type: "string" }, workers: { type: "string" },
    store: { type: "string" }, "admin-socket": { type: "string" }, listen: { type: "string" }, mqtt: { type: "string" },
    "memory-store": { type: "boolean" }, "broker-thread": { type: "boolean" },
  }, HELP);
  if (!p) return 0;
  const v = p.values;
  const cfg = loadConfig(required(v.config, "--config", HELP));
  const io = v.io ?? "none";
  if (io !== "none" && io !== "afpacket") throw new UsageError(`--io ${io}: expected none or afpacket`);
  const workers = v.workers === undefined ? undefined : Number(v.workers);
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1 || workers > 64)) throw new UsageError(`--workers ${v.workers}: an integer 1..64`);
  const pv = v.mqtt === undefined ? 4 : Number(v.mqtt);
  if (pv !== 4 && pv !== 5) throw new UsageError(`--mqtt ${v.mqtt}: 4 (3.1.1) or 5`);
  let listenHost = "127.0.0.1", listenPort = 1883;
  if (v.listen !== undefined) {
    const m = /^(.+):(\d{1,5})$/.exec(v.listen);
    if (!m || Number(m[2]) > 65535) throw new UsageError(`--listen ${v.listen}: expected HOST:PORT`);
    listenHost = m[1].replace(/^\[|\]$/g, "");
    listenPort = Number(m[2]);
  }
  const brokerUrl = v.broker ?? cfg.broker;
  if (brokerUrl !== undefined && !/^(mqtts?|wss?|tcp):\/\//.test(brokerUrl)) throw new UsageError(`--broker ${brokerUrl}: expected mqtt://, mqtts://, ws:// or wss://`);
  const storeDir = resolve(v.store ?? "nvedge-data");
  // Buffered: one write per event-loop turn (stderr to a pipe is a synchronous
  // write per call on Linux; a burst of requests logs thousands of state changes).
  let logBuf: string[] = [];
  const flushLog = () => {
    const lines = logBuf;
    logBuf = [];
    if (lines.length) process.stderr.write(lines.join(""));
  };
  const log = (l: string) => {
    if (logBuf.length === 0) setImmediate(flushLog);
    logBuf.push(`${new Date().toISOString()} ${cfg.nve}: ${l}\n`);
  };
  process.once("exit", flushLog);
  const cleanup: (() => Promise<unknown>)[] = [];
  const shutdown = async () => {
    for (const c of cleanup.reverse()) await c().catch((e) => log(`shutdown: ${(e as Error).message}`));
  };
  try {
    // The store first: an NVE restores its state before it answers anything (PROTOCOL.md §3).
    let store: Store;
    if (v["memory-store"]) {
      const { MemoryStore } = await import("../store/memory.js");
      store = await MemoryStore.open();
    } else {
      mkdirSync(storeDir, { recursive: true });
      const { openLmdbStore } = await import("../store/lmdb.js");
      store = await openLmdbStore(storeDir);
    }
    cleanup.push(() => store.close());

    let programmer: DataPlaneProgrammer;
    let counters: () => unknown;
    let startResolver = async (): Promise<void> => {};
    let trace: ((port: string, frame: Uint8Array) => unknown) | undefined;
    if (io === "none") {
      const { DataPlane } = await import("../dataplane/dataplane.js");
      const dp = await DataPlane.create();
      programmer = { apply: async (ops) => dp.apply(ops) };
      counters = () => dp.counters();
      trace = (port, frame) => {
        const r = dp.trace(port, frame);
        return { steps: r.steps, drop: r.drop ?? null, outputs: r.outputs.map((x) => ({ port: x.port, frame: Buffer.from(x.frame).toString("hex") })) };
      };
    } else {
      const here = dirname(fileURLToPath(import.meta.url));
      if (!existsSync(join(here, "..", "io", "afpacket.js"))) throw new Error("--io afpacket: the packet I/O module (host/io/afpacket) is not built in this installation");
      const { startAfPacket } = await import("../io/afpacket.js");
      // The tables in huge pages whenever the kernel has them (host/dataplane/memory.ts).
      const { thpUsable } = await import("../dataplane/memory.js");
      const hugePages = thpUsable();
      if (!hugePages) log("transparent huge pages are off in this kernel: the tables use 4 KiB pages (more TLB misses per lookup)");
      const pool = await startAfPacket({ config: cfg, workers, dataplane: { hugePages } });
      pool.closed.catch((e: Error) => { log(`packet I/O failed: ${e.message}`); process.exitCode = 1; process.kill(process.pid, "SIGTERM"); });
      cleanup.push(() => pool.stop());
      programmer = pool;
      // The next hop resolved by ARP/ND (issue 11; host/underlay/resolver.ts),
      // unless gatewayMac fixes it; started once the static ops (whose underlay
      // op has no next hop yet) are applied, below.
      let resolver: import("../underlay/resolver.js").UnderlayResolver | undefined;
      startResolver = async () => {
        const { startUnderlayResolver } = await import("../underlay/resolver.js");
        resolver = startUnderlayResolver({ underlay: cfg.underlay, io: pool, apply: (ops) => pool.apply(ops), log });
        if (resolver) cleanup.push(async () => resolver!.stop());
      };
      counters = async () => ({ ...(await pool.counters()), ...(resolver ? { underlay: resolver.show() } : {}) });
    }

    // Restored and programmed before the broker, MQTT and the admin socket are even
    // loaded: forwarding resumes first (issue 4: restart time; PROTOCOL.md §3).
    const { NveCore } = await import("../control/core.js");
    const core = await NveCore.open({ config: cfg, store, programmer, log });
    await startResolver();

    let url = brokerUrl;
    // The IMA (PROTOCOL.md §6) is the only writer of nvo3/v1/ima/: the embedded broker's ACL names it and its operators.
    const imaRoles = cfg.ima ? { imas: [cfg.ima.id], operators: cfg.ima.operators } : {};
    if (!url) {
      // --broker-thread: on its own worker thread, so MQTT packet handling and the NVE's requests use two cores.
      const b = v["broker-thread"]
        ? await (await import("../control/broker-thread.js")).startBrokerThread({ host: listenHost, port: listenPort, nves: [cfg.nve], ...imaRoles,
            passwordFile: cfg.auth?.passwordFile, tls: cfg.auth?.tls, maxPayload: cfg.limits.maxPayload }, (l) => log(`broker: ${l}`))
        : await (await import("../broker/embedded.js")).startEmbeddedBroker({ host: listenHost, port: listenPort, nves: [cfg.nve], ...imaRoles,
            passwordFile: cfg.auth?.passwordFile, tls: cfg.auth?.tls, maxPayload: cfg.limits.maxPayload, log: (l) => log(`broker: ${l}`) });
      cleanup.push(() => b.close());
      url = cfg.auth?.tls ? b.url.replace(/^mqtt:/, "mqtts:") : b.url;
      log(`embedded broker on ${b.url}`);
    }
    const { NveService } = await import("../control/service.js");
    const svc = await NveService.start({
      config: cfg, store, programmer, log, core,
      broker: { url, username: cfg.nve, password: process.env.NVEDGE_MQTT_PASSWORD, protocolVersion: pv as 4 | 5, tls: cfg.auth?.tls },
    });
    cleanup.push(() => svc.stop());
    if (cfg.ima) {
      const { startNveIma } = await import("../ima/nve-wire.js");
      const ima = await startNveIma({ config: cfg, core: svc.core, client: svc.client, programmer, store, log });
      cleanup.push(() => ima.stop()); // runs before svc.stop (cleanup runs in reverse)
    }
    const { startAdmin } = await import("../control/admin.js");
    const adminPath = v["admin-socket"] ?? join(storeDir, "nvedge.sock");
    mkdirSync(dirname(adminPath), { recursive: true });
    const admin = await startAdmin({ path: adminPath, core: svc.core, counters, trace, log });
    cleanup.push(() => admin.close());
    log(`running: --io ${io}, store ${v["memory-store"] ? "(memory)" : storeDir}, admin socket ${adminPath}`);
    await new Promise<void>((res) => {
      process.once("SIGINT", () => res());
      process.once("SIGTERM", () => res());
    });
    log("stopping");
    await shutdown();
    return 0;
  } catch (e) {
    await shutdown();
    throw e;
  }
}
