// `nvedge run --config FILE [--broker URL] [--io afpacket|afxdp|none] [--workers N] [--store DIR]`
// (INTERFACES.md): the data plane (AF_PACKET workers when the config has ports
// and no --io says otherwise; in-process with --io none), the store (LMDB in
// --store, default /var/lib/nvedge), the control plane on MQTT (the embedded
// broker on 127.0.0.1:1883 unless a broker is given), the local admin socket
// (default /run/nvedge/nvedge.sock, or <store>/nvedge.sock with --store) that
// `nvedge show` and operators use (host/control/admin.ts), Prometheus metrics
// with /healthz and /readyz (host/metrics), one logger (host/log), and the
// systemd notifications of a Type=notify unit (host/service/systemd.ts).
// SIGHUP (or `nvedge reload`) re-reads the configuration (host/cli/reload.ts).
// The NVE's own MQTT password, when the broker wants one, comes from the
// environment variable NVEDGE_MQTT_PASSWORD (never from argv, which `ps` shows).
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { inBundle, root } from "../paths.js";
import { UsageError, parseOpts } from "./args.js";
import { brokerUrlError } from "../domain/broker-url.js";
import type { DataPlaneProgrammer } from "../dataplane/ops.js";
import type { Store } from "../store/store.js";
import { LOG_HELP, LOG_OPTS, logOptions } from "./log-opts.js";
import { defaultAdminSocket, defaultConfig, defaultStore } from "./paths.js";
import { parseListen } from "../metrics/listen.js";
import { VERSION } from "../version.js";
import { phase } from "../sys/phase.js";
import { startWorkersEarly, sameInterfaces, earlyGo } from "./run-early.js";
// Only what parses the flags is imported before the packet I/O workers start
// (issue 15: ./run-early.ts); the configuration's validator (ajv, yaml), the
// logger (pino), the store and the rest come after, as they are needed.

const HELP = `usage: nvedge run [--config FILE] [--broker URL] [--io afpacket|afxdp|none] [--workers N] [--store DIR]
                  [--admin-socket PATH] [--listen HOST:PORT] [--mqtt 4|5] [--memory-store] [--broker-thread]
                  [--metrics HOST:PORT] [--log-level L] [--log-format json|text] [--dataplane core|component]
  --config FILE       the configuration (default /etc/nvedge/nvedge.json)
  --broker URL        an external broker; without it (and without "broker" in FILE) the embedded
                      broker listens on --listen (default 127.0.0.1:1883)
  --io afpacket|afxdp|none  packet I/O on the configured interfaces: AF_PACKET (the default when FILE
                      has ports), AF_XDP (an XDP program sends each queue's frames to its worker;
                      zero-copy where the driver has it, else copy mode; one worker per queue), or
                      none: the control plane and an in-process data plane only
  --store DIR         LMDB store directory (default /var/lib/nvedge); --memory-store keeps state in memory only
  --admin-socket P    the local admin socket (default /run/nvedge/nvedge.sock; <store>/nvedge.sock with --store)
  --dataplane K       how the data plane is loaded: core (the AssemblyScript module, default: the
                      faster, see bench/README) or component (the same core as a WebAssembly
                      component, wit/dataplane.wit, through jco's transpiled bindings)
  --broker-thread     run the embedded broker on its own thread (MQTT and the NVE on two cores)
  --metrics HOST:PORT Prometheus /metrics, /healthz and /readyz (or "metrics": {"listen"} in FILE)
${LOG_HELP}
  NVEDGE_MQTT_PASSWORD (env): the NVE's password when the broker requires one
  SIGHUP or \`nvedge reload\`: re-read FILE (static state as a diff, log level, limits), the password
  and TLS files; a configuration that fails validation is refused and the running one kept`;

export async function runCommand(argv: string[]): Promise<number> {
  phase("run: command loaded");
  const p = parseOpts(argv, {
    config: { type: "string" }, broker: { type: "string" }, io: { type: "string" }, workers: { type: "string" },
    store: { type: "string" }, "admin-socket": { type: "string" }, listen: { type: "string" }, mqtt: { type: "string" },
    "memory-store": { type: "boolean" }, "broker-thread": { type: "boolean" }, metrics: { type: "string" }, ...LOG_OPTS,
    dataplane: { type: "string" },
  }, HELP);
  if (!p) return 0;
  const v = p.values;
  // The flags first: a bad flag is reported as such, whatever the file.
  logOptions(v);
  if (v.metrics !== undefined && !parseListen(v.metrics)) throw new UsageError(`--metrics ${v.metrics}: expected HOST:PORT`);
  if (v.io !== undefined && v.io !== "none" && v.io !== "afpacket" && v.io !== "afxdp") throw new UsageError(`--io ${v.io}: expected afpacket, afxdp or none`);
  const loader = v.dataplane ?? "core";
  if (loader !== "core" && loader !== "component") throw new UsageError(`--dataplane ${v.dataplane}: expected core or component`);
  const configFile = v.config ?? defaultConfig();
  if (v.config === undefined && !existsSync(configFile)) throw new UsageError(`missing --config (and no ${configFile})\n${HELP}`);
  const workers = v.workers === undefined ? undefined : Number(v.workers);
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1 || workers > 64)) throw new UsageError(`--workers ${v.workers}: an integer 1..64`);
  const pv = v.mqtt === undefined ? 4 : Number(v.mqtt);
  if (pv !== 4 && pv !== 5) throw new UsageError(`--mqtt ${v.mqtt}: 4 (3.1.1) or 5`);
  let listenHost = "127.0.0.1", listenPort = 1883;
  if (v.listen !== undefined) {
    const l = parseListen(v.listen);
    if (!l) throw new UsageError(`--listen ${v.listen}: expected HOST:PORT`);
    ({ host: listenHost, port: listenPort } = l);
  }
  const storeDir = resolve(v.store ?? defaultStore());
  const adminPath = v["admin-socket"] ?? (v.store !== undefined ? join(storeDir, "nvedge.sock") : defaultAdminSocket());
  // With a table image to restore, the packet I/O workers start now (./run-early.ts).
  let earlyWorkers = await startWorkersEarly({ configFile, io: v.io, workers, storeDir, memoryStore: !!v["memory-store"], loader });
  const stopEarlyWorkers = async () => { const e = earlyWorkers; earlyWorkers = undefined; await (await e?.pool.catch(() => undefined))?.stop(); };
  if (earlyWorkers) phase("run: packet I/O workers started");
  // ... and, when the image is keyed by this very file, the store's last
  // transaction and this build, they forward from it as soon as restored,
  // before the file is validated (./run-early.ts earlyGo; the whole key is
  // checked below all the same). The store's directory is locked for it now,
  // the store itself opened (LMDB loaded) only once the workers forward.
  let earlyLock: import("../store/lmdb-lock.js").StoreLock | undefined;
  let earlyGone = false;
  if (earlyWorkers) {
    try {
      mkdirSync(storeDir, { recursive: true, mode: 0o700 });
      earlyLock = await (await import("../store/lmdb-lock.js")).lockStoreDir(storeDir);
      earlyGone = await earlyGo({ early: earlyWorkers, storeDir, configFile });
      if (earlyGone) phase("run: workers released early");
    } catch {
      // locked by another NVE: the store is opened below, where the failure is reported
    }
  }
  // The file, then the logger: anything refused here stops the early workers.
  const fromFile = async () => {
    const cfg = (await import("../config/load.js")).loadConfig(configFile);
    phase("run: configuration read");
    const logOpts = logOptions(v, cfg.log);
    const brokerUrl = v.broker ?? cfg.broker;
    const badUrl = brokerUrl === undefined ? undefined : brokerUrlError(brokerUrl);
    if (badUrl) throw new UsageError(badUrl);
    const logger = new (await import("../log/logger.js")).Logger({ service: "nve", id: cfg.nve, ...logOpts });
    return { cfg, brokerUrl, logger };
  };
  const { cfg, brokerUrl, logger } = await fromFile().catch(async (e: Error) => { await stopEarlyWorkers(); await earlyLock?.release(); throw e; });
  // --io: packet I/O whenever there is something to forward (issue 13: a device
  // started from its config must forward); --io none for control-only use.
  const io = v.io ?? (cfg.ports.length > 0 ? "afpacket" : "none");
  if (io !== "none" && io !== "afpacket" && io !== "afxdp") throw new UsageError(`--io ${io}: expected afpacket, afxdp or none`);
  const metricsListen = v.metrics ?? cfg.metrics?.listen;
  // the file said otherwise than it seemed to (./run-early.ts): the ordinary start
  if (earlyWorkers && (io !== earlyWorkers.io || !sameInterfaces(earlyWorkers.config, cfg))) await stopEarlyWorkers();

  const log = logger.lines();
  const { systemdNotifier } = await import("../service/systemd.js");
  const notify = systemdNotifier(log);
  const cleanup: (() => Promise<unknown>)[] = [stopEarlyWorkers];
  const shutdown = async () => {
    notify.stopping();
    for (const c of cleanup.reverse()) await c().catch((e) => log(`shutdown: ${(e as Error).message}`));
    notify.close();
    logger.close();
  };
  // A stop asked for while starting (e.g. while the broker is unreachable)
  // still stops cleanly: what was started is stopped, and the table image is
  // written (issue 15), rather than the process dying on the signal.
  let running = false;
  const stopEarly = () => {
    if (running) return;
    log("stopping (during start-up)");
    void shutdown().finally(() => process.exit(0));
  };
  process.once("SIGINT", stopEarly);
  process.once("SIGTERM", stopEarly);
  try {
    let counters: () => Promise<unknown> | unknown = () => undefined;
    let control: (() => import("../metrics/metrics.js").ControlView) | undefined;
    let mqttUp = () => false;
    let programmed = false;

    // The store first: an NVE restores its state before it answers anything (PROTOCOL.md §3).
    let store: Store;
    if (v["memory-store"]) {
      const { MemoryStore } = await import("../store/memory.js");
      store = await MemoryStore.open();
    } else {
      mkdirSync(storeDir, { recursive: true, mode: 0o700 });
      const { openLmdbStore } = await import("../store/lmdb.js");
      store = await openLmdbStore(storeDir, { lock: earlyLock });
    }
    cleanup.push(() => store.close());
    // The first log line (after the store: a store that cannot be opened is the one line of a failed start).
    logger.start("run", { config: resolve(configFile), io });
    phase("run: store open");

    // The data plane's table image (issue 15, host/control/dp-image.ts): the
    // tables as they were at the store's last transaction, so forwarding
    // resumes without programming every record again; refused (and the
    // tables rebuilt from the records) unless it matches.
    const dpImage = await import("../control/dp-image.js");
    const imageFile = dpImage.imagePath(storeDir);
    const imageKey = dpImage.expectedKey(store, cfg, { loader }, configFile);
    let image = dpImage.startImage(imageFile, imageKey, log);
    phase("run: image checked");
    let snapshotDp: (key: import("../dataplane/image.js").ImageKey) => Promise<Uint8Array> = () => Promise.reject(new Error("no data plane"));
    let currentConfig = () => cfg;
    let imageWriter: import("../control/dp-image.js").ImageWriter | undefined;
    if (imageKey) {
      const [{ imageKeyOf }, { parseConfig }] = await Promise.all([import("../dataplane/load.js"), import("../config/load.js")]);
      imageWriter = new dpImage.ImageWriter({
        // with packet I/O, worker 0 takes it a slice at a time between batches
        // (host/io/worker.ts), so it is written while running too: a crash
        // restarts from the last one rather than rebuilding from the records
        path: imageFile, store, log, snapshot: (k) => snapshotDp(k),
        key: () => ({ ...imageKeyOf({ loader }), storeSchema: dpImage.STORE_SCHEMA, config: dpImage.staticHash(currentConfig()), configFile: dpImage.configFileKey(configFile, currentConfig(), parseConfig) }),
      });
      store = imageWriter.wrapStore(store);
    }
    const fromImage = (what: string) => log(`forwarding: ${what} ${performance.now().toFixed(0)} ms after process start`);

    let programmer: DataPlaneProgrammer;
    let startResolver = async (): Promise<void> => {};
    let trace: ((port: string, frame: Uint8Array) => unknown) | undefined; // one frame on the running tables (admin `trace`)
    let tap: import("./admin-extras.js").TapSource | undefined;
    // where the data plane's learn records come from (PROTOCOL.md §5 learn: glean)
    let onLearn: (h: (recs: import("../dataplane/dataplane.js").LearnRecord[]) => void) => void = () => {};
    if (io === "none") {
      const { DataPlane } = await import("../dataplane/dataplane.js");
      const dp = await DataPlane.create({ loader, image }).catch(async (e: Error) => {
        if (!image) throw e;
        dpImage.refuseImage(imageFile, e, log);
        image = undefined;
        return DataPlane.create({ loader });
      });
      snapshotDp = async (k) => dp.snapshot(k);
      programmer = { apply: async (ops) => dp.apply(ops) };
      onLearn = (h) => { dp.learnSink = h; };
      counters = () => dp.counters();
      trace = (port, frame) => {
        const r = dp.trace(port, frame);
        return { steps: r.steps, drop: r.drop ?? null, outputs: r.outputs.map((x) => ({ port: x.port, frame: Buffer.from(x.frame).toString("hex") })) };
      };
    } else {
      if (!inBundle && !existsSync(join(root, "dist", "host", "io", "afpacket.js"))) throw new Error("--io afpacket: the packet I/O module (host/io/afpacket) is not built in this installation");
      const { startAfPacket } = await import("../io/afpacket.js");
      phase("run: packet I/O loaded");
      // The tables in huge pages whenever the kernel has them (host/dataplane/memory.ts).
      const { thpUsable } = await import("../dataplane/memory.js");
      const hugePages = thpUsable();
      if (!hugePages) log("io: transparent huge pages are off in this kernel: the tables use 4 KiB pages (more TLB misses per lookup)");
      // The kernel's routes are read now, while the process is small (host/underlay/routes.ts primeRoutes).
      const { kernelRoutes, primeRoutes } = await import("../underlay/routes.js");
      const routes = cfg.underlay.gatewayMac ? undefined
        : primeRoutes(kernelRoutes({ is6: cfg.underlay.ip.includes(":"), port: cfg.underlay.port, vlan: cfg.underlay.vlan, log }));
      const start = () => startAfPacket({ config: cfg, workers, io, dataplane: { hugePages, loader, image } });
      phase("run: kernel routes read");
      // Workers started early (./run-early.ts) restored the file themselves:
      // they forward from it if its key is the one checked now and every one
      // of them restored it whole, else from empty tables programmed below.
      const held = await earlyWorkers?.pool.catch(() => undefined);
      earlyWorkers = undefined;
      // every worker's image is known once all are up (afpacket.ts stagger: the first one may forward meanwhile)
      if (held && !earlyGone) await held.joined.catch(() => undefined);
      if (held && earlyGone) {
        // released before the file was validated: the whole key must hold now (it does unless the code
        // that makes the static state changed without the build's hashes): else no forwarding on it
        // the workers that are up (afpacket.ts stagger): one still starting must match worker 0's image or the pool fails
        const why = !image ? "its key no longer matches once the configuration is validated"
          : held.images.filter((r) => r !== undefined).map((r) => "refused" in r ? r.refused : dpImage.keyDifference(r.key, image!.meta.key)).find((w) => w !== undefined)
            ?? (held.images[0] ? undefined : "not restored");
        if (why) {
          dpImage.refuseImage(imageFile, new dpImage.ImageRefused(why), log);
          await held.stop();
          throw new Error("the packet I/O workers forwarded from a table image that does not match the configuration: start again (it is removed)");
        }
      } else if (held) {
        const why = !image ? undefined : held.images.map((r) => !r ? "not restored"
          : "refused" in r ? r.refused : dpImage.keyDifference(r.key, image!.meta.key)).find((w) => w !== undefined);
        if (why) { dpImage.refuseImage(imageFile, new dpImage.ImageRefused(why), log); image = undefined; }
        held.go(!!image);
      }
      const pool = held ?? await start().catch((e: Error) => {
        if (!image) throw e;
        dpImage.refuseImage(imageFile, e, log);
        image = undefined;
        return start();
      }).catch((e: Error) => {
        throw new Error(`--io ${io}: ${e.message}${v.io === undefined ? " (the configuration has ports, so packet I/O is the default; --io none runs the control plane only)" : ""}`);
      });
      snapshotDp = (k) => pool.snapshot(k);
      phase("run: every worker forwarding");
      for (const m of pool.modes) log(`io: ${io} ${m}`);
      pool.closed.catch((e: Error) => { log(`FATAL io: packet I/O failed: ${e.message}`); process.exitCode = 1; process.kill(process.pid, "SIGTERM"); });
      cleanup.push(() => pool.stop());
      onLearn = (h) => pool.onLearn(h);
      // The next hops resolved by the NVE (issue 11; host/underlay/resolver.ts):
      // from underlay.gateway or the kernel's routes, by ARP/ND, unless
      // gatewayMac fixes one; started once the static ops (whose underlay op
      // has no next hop yet) are applied, below. Every remote NVE the ops name
      // is handed to it, those applied before it starts included.
      const { startUnderlayResolver, remotesOf } = await import("../underlay/resolver.js");
      let resolver: import("../underlay/resolver.js").UnderlayResolver | undefined;
      const early = new Set<string>();
      // the remote NVEs the image's tables send to, whose next hops the resolver must find (no op names them now)
      for (const r of (image?.meta.info.remotes as string[] | undefined) ?? []) early.add(r);
      programmer = {
        apply: (ops) => {
          const rs = remotesOf(ops);
          if (rs.length) { if (resolver) resolver.addRemotes(rs); else for (const r of rs) early.add(r); }
          return pool.apply(ops);
        },
      };
      startResolver = async () => {
        resolver = startUnderlayResolver({ underlay: cfg.underlay, io: pool, apply: (ops) => pool.apply(ops), log, remotes: early, routes });
        if (!resolver) return;
        cleanup.push(async () => resolver!.stop());
        // forwarding first (PROTOCOL.md §3): the first ARP / NS answers are
        // handled before the broker and MQTT start-up take the main thread
        await resolver.settled(250);
      };
      counters = async () => ({ ...(await pool.counters()), ...(resolver ? { underlay: resolver.show() } : {}) });
      tap = pool;
      trace = async (port, frame) => {
        const r = await pool.trace(port, frame);
        return { steps: r.steps, drop: r.drop ?? null, outputs: r.outputs.map((x) => ({ port: x.port, frame: Buffer.from(x.frame).toString("hex") })) };
      };
    }

    if (image) fromImage(`the tables from the image at store transaction ${image.meta.key.txnId},`);
    // The metrics (prom-client) once the data plane forwards (issue 15: start-up time).
    const { NveMetrics } = await import("../metrics/metrics.js");
    const metrics = new NveMetrics({ counters: () => counters(), control: () => control!(), mqttConnected: () => mqttUp() }, { nve: cfg.nve });
    store = metrics.instrumentStore(store);
    if (imageWriter) {
      programmer = imageWriter.wrapProgrammer(programmer);
      // a clean stop writes the image: after every writer stopped (cleanup runs last first), before the data plane and store go
      const w = imageWriter;
      cleanup.push(() => w.close());
    }

    // Restored and programmed before the broker, MQTT and the admin socket are even
    // loaded: forwarding resumes first (issue 4: restart time; PROTOCOL.md §3).
    const { NveCore } = await import("../control/core.js");
    const core = await NveCore.open({ config: cfg, store, programmer, log, programmed: !!image }).catch(async (e: Error) => {
      // A refusal of the file's static state names the key at fault, not the op number (issue 13).
      const { DataPlaneError } = await import("../dataplane/dataplane.js");
      if (!(e instanceof DataPlaneError)) throw e;
      const [{ staticOps }, { VnCatalog }, { opProblem, dottedKey }, { ConfigError }] = await Promise.all([
        import("../control/static.js"), import("../control/catalog.js"), import("../config/check.js"), import("../config/load.js")]);
      const ops = staticOps(cfg, VnCatalog.fromConfig(structuredClone(cfg)));
      if (e.index >= ops.length) throw e;
      const p = opProblem(cfg, ops, e);
      throw new ConfigError(configFile, dottedKey(p.path), p.message);
    });
    if (!image) fromImage("the tables rebuilt from the store's records,");
    imageWriter?.started(!!image);
    await startResolver();
    programmed = true;
    control = () => controlView(core);

    let url = brokerUrl;
    let broker: { reload(): void | Promise<void> } | undefined;
    // The IMA (PROTOCOL.md §6) is the only writer of nvo3/v1/ima/: the embedded broker's ACL names it and its operators.
    const imaRoles = cfg.ima ? { imas: [cfg.ima.id], operators: cfg.ima.operators } : {};
    // Issue 10: the NVE answers only the hypervisors on its own ports.
    const { hypervisorsOf } = await import("../broker/acl.js");
    const hypervisors = { [cfg.nve]: hypervisorsOf(cfg) };
    if (!url) {
      const blog = logger.lines("broker");
      // --broker-thread: on its own worker thread, so MQTT packet handling and the NVE's requests use two cores.
      const b = v["broker-thread"]
        ? await (await import("../broker/broker-thread.js")).startBrokerThread({ host: listenHost, port: listenPort, nves: [cfg.nve], hypervisors, ...imaRoles,
            passwordFile: cfg.auth?.passwordFile, tls: cfg.auth?.tls, maxPayload: cfg.limits.maxPayload }, blog)
        : await (await import("../broker/embedded.js")).startEmbeddedBroker({ host: listenHost, port: listenPort, nves: [cfg.nve], hypervisors, ...imaRoles,
            passwordFile: cfg.auth?.passwordFile, tls: cfg.auth?.tls, maxPayload: cfg.limits.maxPayload, log: blog });
      cleanup.push(() => b.close());
      broker = b;
      url = cfg.auth?.tls ? b.url.replace(/^mqtt:/, "mqtts:") : b.url;
    }
    const { NveService } = await import("../control/service.js");
    const svc = await NveService.start({
      config: cfg, store, programmer, log, core,
      broker: { url, username: cfg.nve, password: process.env.NVEDGE_MQTT_PASSWORD, protocolVersion: pv as 4 | 5, tls: cfg.auth?.tls },
    });
    svc.observe = (op, code, s) => metrics.observeRequest(op, code, s);
    mqttUp = () => svc.client.connected;
    cleanup.push(() => svc.stop());
    if (cfg.ima) {
      const { startNveIma } = await import("../ima-client/wire.js");
      const ima = await startNveIma({ config: cfg, core: svc.core, client: svc.client, programmer, store, log });
      cleanup.push(() => ima.stop()); // runs before svc.stop (cleanup runs in reverse)
    }
    // learn: glean (PROTOCOL.md §5): the sources the data plane reports become
    // bindings of their VAP, stored, programmed and announced (host/control/glean.ts)
    {
      const { Gleaner } = await import("../control/glean.js");
      const c = svc.core;
      const gleaner = new Gleaner({
        profile: (vn) => c.catalog.get(vn)?.profile,
        tag: (port, vn) => c.model.vaps.get(`${port}|${vn}`)?.tag,
        signalledMac: (vn, mac) => c.model.macOwner.has(`${vn}|${mac}`),
        signalledIp: (vn, ip) => c.model.ipOwner.has(`${vn}|${ip}`),
        apply: (ops) => programmer.apply(ops),
        persist: (changes) => store.transaction((w) => { for (const [k, r] of changes) r ? w.put("learned", k, r) : w.del("learned", k); }),
        announce: (ch) => c.ima?.applyLocal(ch),
        now: () => Date.now(),
        log,
      });
      c.gleaned = () => gleaner.list();
      await gleaner.restore(store.list("learned").map(([, r]) => r));
      onLearn((recs) => void gleaner.learn(recs).catch(() => { /* logged by the gleaner */ }));
      const sweep = setInterval(() => void gleaner.sweep().catch(() => { /* logged */ }), 1000);
      sweep.unref();
      cleanup.push(async () => clearInterval(sweep));
    }

    const { Reloader } = await import("./reload.js");
    const reloader = new Reloader({ configFile, current: cfg, core, broker, client: svc.client, clientTls: cfg.auth?.tls, logger, log, notify, metrics, logLevelFixed: v["log-level"] !== undefined });
    currentConfig = () => reloader.config;
    process.on("SIGHUP", () => { void reloader.reload("SIGHUP").catch(() => { /* logged by reload */ }); });

    if (metricsListen) {
      const { serveMetrics } = await import("../metrics/metrics.js");
      const m = await serveMetrics({
        listen: metricsListen, registry: metrics.registry,
        healthy: () => healthOf(store),
        ready: () => !programmed ? "the data plane is not programmed yet" : !svc.client.connected ? "the MQTT session is down" : undefined,
      }).catch((e: Error) => { throw new Error(`metrics on ${metricsListen}: ${e.message}`); });
      cleanup.push(() => m.close());
      log(`metrics: serving ${m.url}/metrics, /healthz, /readyz`);
    }

    const { startAdmin } = await import("../control/admin.js");
    mkdirSync(dirname(adminPath), { recursive: true, mode: 0o755 });
    const started = Date.now();
    const { adminExtras } = await import("./admin-extras.js");
    const extras = adminExtras({ core: svc.core, logger, reloader, counters: () => counters(), tap, started, io,
      mqttUp: () => svc.client.connected, version: VERSION, broker: brokerUrl ?? `embedded (${url})` });
    cleanup.push(async () => extras.close());
    // `show counters` counts from the last `counters clear`; /metrics keeps the data plane's own counters.
    const admin = await startAdmin({ path: adminPath, core: svc.core, counters: extras.counters, trace, log, extra: extras.commands });
    cleanup.push(() => admin.close());
    log(`running: --io ${io}, store ${v["memory-store"] ? "(memory)" : storeDir}, admin socket ${adminPath}`);
    notify.ready(`forwarding; ${core.model.vnics.size} VNICs`);
    running = true;
    process.off("SIGINT", stopEarly);
    process.off("SIGTERM", stopEarly);
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

/** /healthz: the store answers a read (the process answering at all is the other half). */
function healthOf(store: Store): string | undefined {
  try {
    store.get("hvs", "\u0000health");
    return undefined;
  } catch (e) {
    return `the store does not answer: ${(e as Error).message}`;
  }
}

/** The control plane's figures for the metrics (read at scrape time). */
export function controlView(core: import("../control/core.js").NveCore): import("../metrics/metrics.js").ControlView {
  const m = core.model;
  let quarantined = 0, online = 0;
  for (const p of core.ports() as { quarantine: unknown[] }[]) quarantined += p.quarantine.length;
  for (const h of m.hvs.values()) if (h.online) online++;
  return { vnics: m.vnics.size, bindings: m.macOwner.size, tagsInUse: m.vaps.size, tagsQuarantined: quarantined,
    agentsOnline: online, agentsKnown: core.hypervisors().length };
}
