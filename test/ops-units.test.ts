// The service units of etc/systemd/ (issue 13) pass `systemd-analyze verify`,
// run the commands the CLI has, and the logger behaves as operators expect:
// levels, JSON or text, one component prefix, client strings escaped, repeated
// warnings rate-limited with the count reported.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { requireTool, onPath } from "./support/tools.js";

// Strict (issue 17): as root or in CI a missing tool fails the run, naming it.
const ANALYZE = requireTool("systemd-analyze", () => onPath("systemd-analyze"), "systemd-analyze verify of the etc/systemd units");
const NOTIFY = requireTool("systemd-notify", () => onPath("systemd-notify") && onPath("python3"), "the sd_notify readiness, watchdog and stopping messages");
const PASSWD = requireTool("mosquitto_passwd", () => onPath("mosquitto_passwd"), "the broker thread's password-file reload");
import { Logger, escapeText, kindOf } from "../host/log/logger.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const UNITS = `${ROOT}etc/systemd`;

test("etc/systemd units: systemd-analyze verify finds nothing; Type=notify, reload by SIGHUP, the standard paths", () => {
  const names = readdirSync(UNITS).filter((f) => f.endsWith(".service")).sort();
  assert.equal(names, ["nvedge-agent@.service", "nvedge-ima.service", "nvedge.service"]);
  for (const n of names) {
    const u = readFileSync(`${UNITS}/${n}`, "utf8");
    assert.match(u, /^Type=notify$/m, n);
    assert.match(u, /^NotifyAccess=all$/m, n);
    assert.match(u, /^WatchdogSec=\d+$/m, n);
    assert.match(u, /^StateDirectory=nvedge$/m, n);
    // `systemctl reload` is SIGHUP for all three (issue 13: run re-reads its file, ima its file, the agent its env file).
    assert.match(u, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, n);
  }
  assert.match(readFileSync(`${UNITS}/nvedge-agent@.service`, "utf8"), /^ExecStart=.* --env-file \/etc\/nvedge\/agent-%i\.env$/m);
  const main = readFileSync(`${UNITS}/nvedge.service`, "utf8");
  assert.match(main, /^ExecStart=\/usr\/bin\/nvedge run --config \/etc\/nvedge\/nvedge\.json$/m);
  assert.match(main, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  assert.match(main, /^RuntimeDirectory=nvedge$/m);
  if (!ANALYZE) return; // recorded: the run says so (or fails, when strict)
  // Verified as installed, with the real program where the unit says /usr/bin/nvedge.
  const dir = mkdtempSync("/tmp/nvl-units-");
  try {
    const bin = `${dir}/nvedge`;
    writeFileSync(bin, `#!/bin/sh\nexec ${process.execPath} ${ROOT}bin/nvedge.js "$@"\n`);
    chmodSync(bin, 0o755);
    for (const n of names) {
      const file = `${dir}/${n.replace("@", "@hv-1")}`; // a template is verified as an instance
      writeFileSync(file, readFileSync(`${UNITS}/${n}`, "utf8").replaceAll("/usr/bin/nvedge", bin));
      const r = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8" });
      const complaints = (r.stdout + r.stderr).split("\n").filter((l) => l.trim() && !/Failed to prepare filename|mosquitto\.service|openvswitch-switch\.service|nvedge-ima\.service/.test(l));
      assert.equal(complaints, [], `${n}: ${r.stdout}${r.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

if (NOTIFY) test("Type=notify: nvedge run sends READY=1 with a status, WATCHDOG=1 every half $WATCHDOG_USEC, and STOPPING=1 (sd_notify)", async () => {
  const dir = mkdtempSync("/tmp/nvl-notify-");
  try {
    writeFileSync(`${dir}/nve.json`, JSON.stringify({ nve: "nve-n", underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" } }));
    const { freePort } = await import("./support/control-harness.js");
    const port = await freePort();
    // systemd's side: a datagram socket that prints what it receives, bounded in time.
    const listener = spawn("python3", ["-c", [
      "import socket,sys,time",
      "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)",
      `s.bind(${JSON.stringify(`${dir}/notify.sock`)})`,
      "print('listening',flush=True)",
      "s.settimeout(1)",
      "end=time.time()+60",
      "while time.time()<end:",
      "  try: m=s.recv(4096).decode()",
      "  except socket.timeout: continue",
      "  print(m.replace(chr(10),' '),flush=True)",
      "  if 'STOPPING=1' in m: break",
    ].join("\n")], { stdio: ["ignore", "pipe", "inherit"] });
    let got = "";
    listener.stdout!.on("data", (d) => (got += d));
    const { until } = await import("./support/control-harness.js");
    await until(() => got.includes("listening"), 10_000, "the notify socket");
    const nve = spawn(process.execPath, [`${ROOT}bin/nvedge.js`, "run", "--config", `${dir}/nve.json`, "--memory-store", "--store", dir, "--listen", `127.0.0.1:${port}`],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NOTIFY_SOCKET: `${dir}/notify.sock`, WATCHDOG_USEC: "2000000" } });
    let err = "";
    nve.stderr!.on("data", (d) => (err += d));
    try {
      await until(() => (got.match(/WATCHDOG=1/g) ?? []).length >= 2, 60_000, `READY and two WATCHDOG=1 (${got}; ${err})`);
      assert.match(got, new RegExp(`READY=1 STATUS=forwarding; 0 VNICs MAINPID=${nve.pid}`));
      assert.ok(got.indexOf("READY=1") < got.indexOf("WATCHDOG=1"));
    } finally {
      nve.kill("SIGTERM");
      await new Promise((r) => nve.once("exit", r));
    }
    await until(() => got.includes("STOPPING=1"), 10_000, `STOPPING=1 (${got})`);
    listener.kill();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

if (PASSWD) test("the embedded broker on its own thread reloads its password file (SIGHUP of --broker-thread); a broken file is refused and the old users stay", async () => {
  const { startBrokerThread } = await import("../host/broker/broker-thread.js");
  const mqtt = (await import("mqtt")).default;
  const dir = mkdtempSync("/tmp/nvl-bthr-");
  const pw = `${dir}/passwd`;
  spawnSync("mosquitto_passwd", ["-c", "-b", pw, "hv-1", "one"]);
  const b = await startBrokerThread({ host: "127.0.0.1", port: 0, nves: ["nve-a"], passwordFile: pw });
  const login = (u: string, p: string) => mqtt.connectAsync(b.url, { username: u, password: p, clientId: `${u}-login`, reconnectPeriod: 0, connectTimeout: 5000 })
    .then(async (c) => { await c.endAsync(); return true; }, () => false);
  try {
    assert.is(await login("hv-2", "two"), false);
    spawnSync("mosquitto_passwd", ["-b", pw, "hv-2", "two"]);
    await b.reload();
    assert.is(await login("hv-2", "two"), true);
    writeFileSync(pw, "not a password line\n");
    try {
      await b.reload();
      assert.unreachable("a broken password file is refused");
    } catch (e) {
      assert.match((e as Error).message, /auth\.passwordFile/);
    }
    assert.is(await login("hv-1", "one"), true, "the old users stay");
  } finally {
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

function collect(o: Partial<ConstructorParameters<typeof Logger>[0]> = {}) {
  const lines: string[] = [];
  let t = 0;
  const log = new Logger({ service: "nve", id: "nve-a", dest: { write: (s: string) => lines.push(s) }, now: () => t, ...o });
  return { log, lines, at: (ms: number) => { t = ms; } };
}

test("logger: one component prefix, levels from the line, JSON records", () => {
  const { log, lines } = collect({ format: "json" });
  log.line("broker: broker: auth refused: identity=x");
  log.line("mqtt: nve-a serving nvo3-hv/1");
  log.line("FATAL: the store failed");
  log.pino.debug("hidden at info");
  const recs = lines.map((l) => JSON.parse(l));
  assert.equal(recs.map((r) => [r.level, r.component, r.msg]), [
    ["warn", "broker", "auth refused: identity=x"], ["info", "mqtt", "nve-a serving nvo3-hv/1"], ["fatal", undefined, "FATAL: the store failed"]]);
  assert.is(recs[0].service, "nve");
  assert.is(recs[0].id, "nve-a");
  log.setLevel("debug");
  log.pino.debug("shown at debug");
  assert.is(JSON.parse(lines[3]).msg, "shown at debug");
  log.setLevel("error");
  log.line("agent hv-1: online");
  assert.is(lines.length, 4);
});

test("logger: a client string cannot forge a line or drive the terminal (text), JSON escapes it", () => {
  const forged = 'request r1 from hv-1: bad-request: "x\n2026-01-01T00:00:00.000Z INFO  nve-a admin: fake\u001b[2J\u2028"';
  const t = collect({ format: "text" });
  t.log.line(forged);
  assert.is(t.lines.length, 1);
  assert.is(t.lines[0].split("\n").length, 2, "one line and its newline");
  assert.ok(t.lines[0].includes("\\x0a2026-01-01") && t.lines[0].includes("\\x1b[2J") && t.lines[0].includes("\\u2028"));
  const j = collect({ format: "json" });
  j.log.line(forged);
  assert.is(j.lines.length, 1);
  assert.is(JSON.parse(j.lines[0]).msg, forged);
  assert.is(escapeText("a\tb\rc"), "a\\x09b\\x0dc");
});

test("logger: repeated warnings of one kind are rate-limited per window, and the number left out is reported", () => {
  const { log, lines, at } = collect({ format: "json", burst: 3, windowMs: 10_000 });
  for (let i = 0; i < 50; i++) log.line(`request r${i} from hv-${i % 7}: not-authorized: hv-${i % 7} may not use VN ${i}`);
  log.line("authorization: hv-9 refused (hello): not listed"); // another kind: logged
  assert.is(lines.length, 4);
  at(10_001);
  log.line("request r99 from hv-1: not-authorized: hv-1 may not use VN 1");
  const recs = lines.map((l) => JSON.parse(l));
  assert.is(recs[4].suppressed, 47);
  assert.match(recs[4].msg, /^47 more like this in 10 s were not logged: request r0 from hv-0/);
  assert.is(recs[5].msg, "request r99 from hv-1: not-authorized: hv-1 may not use VN 1");
  // Info lines (state changes) are never dropped.
  for (let i = 0; i < 20; i++) log.line(`agent hv-${i}: online`);
  assert.is(lines.length, 26);
  assert.is(kindOf("request r1 from hv-3: x"), kindOf("request r22 from hv-9: x"));
});

test.run();
