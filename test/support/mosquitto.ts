// Starts a real Mosquitto 2 for a test (issue 3: "the tests also run the whole
// suite against Mosquitto ... started by the test harness with a generated
// config, password file and acl_file"). Everything lives in a fresh temp dir;
// close() stops the broker and removes the dir, and so does process exit.
// Mosquitto serves MQTT 3.1.1 and 5: clients pick with MQTT.js
// `protocolVersion: 4 | 5`.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, chmodSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mosquittoAclFile } from "../../host/cli/mosquitto-acl.js";
import { DEFAULT_MAX_PAYLOAD } from "../../host/broker/embedded.js";
import { mosquittoGlobalLines, mosquittoListenerLines } from "../../host/cli/mosquitto-conf.js";
import { brokerLimits, type BrokerLimits } from "../../host/broker/limits.js";
import { makePki, type Pki } from "./pki.js";

export interface MosquittoOptions {
  users: Record<string, string>;
  nves: string[];
  imas?: string[];
  operators?: string[];
  tls?: boolean;
  maxPayload?: number;
  /** per NVE, the hypervisors it may answer (absent: any) */
  hypervisors?: Record<string, string[]>;
  limits?: Partial<BrokerLimits>;
  /**
   * `use_username_as_clientid` as the shipped etc/mosquitto/nvedge.conf has it
   * (issue 10). Off by default: tests that run two clients of one identity
   * at once (an agent and a raw client) would take over each other's session.
   */
  clientIdIsIdentity?: boolean;
  /** Listen on this port (a broker restarted on the port its clients know); default: a free one. */
  port?: number;
  /**
   * Also listen on a Unix socket in the broker's directory (`listener 0
   * PATH`, Mosquitto ≥ 2.0), for clients on this host (`unixUrl`:
   * mqtt+unix:///PATH); password authentication as on the TCP listener. Not
   * with `tls`.
   */
  unixSocket?: boolean;
  /** `max_inflight_messages` instead of the shipped configuration's (a bench's A/B: bench/control.ts). */
  maxInflightMessages?: number;
}

export interface RunningMosquitto {
  url: string;
  port: number;
  /** mqtt+unix:///PATH of the Unix socket listener (unixSocket). */
  unixUrl?: string;
  passwordFile: string;
  aclFile: string;
  dir: string;
  pki?: Pki;
  /** What Mosquitto logged so far (stderr). */
  log(): string;
  close(): Promise<void>;
}

const running = new Set<{ child: ChildProcess; dir: string }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const r of running) {
      try { r.child.kill("SIGKILL"); } catch { /* already gone */ }
      try { rmSync(r.dir, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  });
}


function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ port, host: "127.0.0.1" });
    const done = (ok: boolean) => { c.destroy(); resolve(ok); };
    c.once("connect", () => done(true));
    c.once("error", () => done(false));
    c.setTimeout(500, () => done(false));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface MosquittoProcess { log(): string; close(): Promise<void> }

/**
 * Runs `mosquitto -c conf` (a file already written in `dir`) and waits until
 * every port in `ports` accepts connections (bounded: 5 s). close() stops it
 * and removes `dir`; process exit does the same.
 */
export async function spawnMosquitto(conf: string, ports: number[], dir: string): Promise<MosquittoProcess> {
  installExitHook();
  let stderr = "";
  const child = spawn("mosquitto", ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.on("data", (d: Buffer) => { stderr = (stderr + d.toString()).slice(-200_000); });
  const entry = { child, dir };
  running.add(entry);
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => child.once("exit", (code) => { exitCode = code; running.delete(entry); resolve(); }));

  const deadline = Date.now() + 5000;
  const pending = new Set(ports);
  while (pending.size > 0 && Date.now() < deadline && exitCode === undefined) {
    for (const p of [...pending]) if (await canConnect(p)) pending.delete(p);
    if (pending.size > 0) await new Promise((r) => setTimeout(r, 50));
  }
  if (pending.size > 0) {
    child.kill("SIGKILL");
    await exited;
    throw new Error(`mosquitto did not start listening on 127.0.0.1:${[...pending].join(",")}${exitCode !== undefined ? ` (exit ${exitCode})` : ""}: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
  }
  let closing: Promise<void> | undefined;
  return {
    log: () => stderr,
    close() {
      closing ??= (async () => {
        if (exitCode === undefined) {
          child.kill("SIGTERM");
          const t = setTimeout(() => child.kill("SIGKILL"), 3000);
          await exited;
          clearTimeout(t);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

async function startOnce(o: MosquittoOptions, dir: string, pki: Pki | undefined): Promise<RunningMosquitto> {
  const port = o.port ?? await freePort();
  const passwordFile = join(dir, "passwd");
  const aclFile = join(dir, "acl");
  const conf = join(dir, "mosquitto.conf");
  if (o.unixSocket && pki) throw new Error("startMosquitto: unixSocket is served with passwords, not with tls");
  const unixPath = o.unixSocket ? join(dir, "mqtt.sock") : undefined;
  const lines = [
    "# generated by test/support/mosquitto.ts",
    "per_listener_settings false",
    "allow_anonymous false",
    "persistence false",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "connection_messages true",
    // the shipped configuration's global options (host/cli/mosquitto-conf.ts):
    // the packet limit above maxPayload (PROTOCOL.md §1), TCP_NODELAY, the queue caps
    ...mosquittoGlobalLines(brokerLimits(o.limits), o.maxPayload ?? DEFAULT_MAX_PAYLOAD).filter((l) => l && !l.startsWith("#")),
    // the shipped file leaves max_inflight_messages at Mosquitto's default (20)
    ...(o.maxInflightMessages !== undefined ? [`max_inflight_messages ${o.maxInflightMessages}`] : []),
    `acl_file ${aclFile}`,
    // the Unix socket first: it exists once the TCP port (what spawnMosquitto waits for) accepts
    ...(unixPath ? [`listener 0 ${unixPath}`, ...mosquittoListenerLines(brokerLimits(o.limits), o.clientIdIsIdentity === true)] : []),
    `listener ${port} 127.0.0.1`,
    ...mosquittoListenerLines(brokerLimits(o.limits), o.clientIdIsIdentity === true),
  ];
  if (pki) {
    // RFC 8394 Req-11: the client must present a certificate from our CA; its CN is the identity
    lines.push(`cafile ${pki.caFile}`, `certfile ${pki.serverCert}`, `keyfile ${pki.serverKey}`,
      "require_certificate true", "use_identity_as_username true");
  } else {
    lines.push(`password_file ${passwordFile}`);
  }
  // Mosquitto started as root drops to the `mosquitto` user before it reads
  // these files (in a 0700 dir); "user root" keeps it as the test's own user.
  if (process.getuid?.() === 0) lines.unshift("user root");
  writeFileSync(conf, lines.join("\n") + "\n");
  const proc = await spawnMosquitto(conf, [port], dir);
  return {
    url: `${pki ? "mqtts" : "mqtt"}://127.0.0.1:${port}`,
    port,
    ...(unixPath ? { unixUrl: `mqtt+unix://${unixPath}` } : {}),
    passwordFile,
    aclFile,
    dir,
    pki,
    log: proc.log,
    close: proc.close,
  };
}

export async function startMosquitto(o: MosquittoOptions): Promise<RunningMosquitto> {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), "nvl-mosquitto-"));
  try {
    chmodSync(dir, 0o700);
    const passwordFile = join(dir, "passwd");
    const names = Object.keys(o.users);
    // the real tool writes the real format (and refuses bad names the same way).
    // One `mosquitto_passwd -U` hashes a whole plain `user:password` file: the
    // fixtures list 80+ users, and one process per user cost a second or more
    // per broker start. A name or password that the plain format cannot hold
    // (':' in a name, a line break, an empty password) goes through -b, which
    // refuses it as before.
    const plain = names.every((u) => u !== "" && !/[:\r\n]/.test(u) && o.users[u] !== "" && !/[\r\n]/.test(o.users[u]));
    if (plain) {
      writeFileSync(passwordFile, names.map((u) => `${u}:${o.users[u]}\n`).join(""), { mode: 0o600 });
      if (names.length > 0) execFileSync("mosquitto_passwd", ["-U", passwordFile], { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });
    } else {
      names.forEach((user, i) => {
        execFileSync("mosquitto_passwd", [...(i === 0 ? ["-c"] : []), "-b", passwordFile, user, o.users[user]], { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });
      });
      if (names.length === 0) writeFileSync(passwordFile, "");
    }
    writeFileSync(join(dir, "acl"), mosquittoAclFile({ nves: o.nves, imas: o.imas ?? ["ima"], operators: o.operators ?? [], hypervisors: o.hypervisors }));
    const ids = [...new Set([...names, ...o.nves, ...(o.imas ?? ["ima"]), ...(o.operators ?? [])])];
    const pki = o.tls ? makePki(join(dir, "pki"), ids) : undefined;
    // a free port can be taken between probing and binding: try a few times
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        return await startOnce(o, dir, pki);
      } catch (e) {
        last = e;
      }
    }
    throw last;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
