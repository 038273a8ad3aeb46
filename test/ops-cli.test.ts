// Operating a running NVE as a network engineer would (issue 13), against a
// real `nvedge run --io none` process with the embedded broker and a password
// file: every new command's --help, clear errors and exit code 2 on bad usage,
// `config check` with JSON paths, the summary and the other views, the admin
// actions from the command line, /metrics through `promtool check metrics`,
// SIGHUP with a new user in the password file (same pid), and a bad
// configuration on reload refused while the NVE keeps forwarding.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync } from "node:fs";
import mqtt from "mqtt";
import { adminRequest } from "../host/control/admin.js";
import { freePort, runNvedge, spawnNvedge, until } from "./support/control-harness.js";
import { missingTool } from "./support/netns.js";
import { udpFrame } from "./support/encoder.js";
import { VERSION } from "../host/version.js";

const V1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const V2 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b02";
const MAC1 = "02:00:5e:00:00:01", MAC2 = "02:00:5e:00:00:02", MAC3 = "02:00:5e:00:00:03", MAC4 = "02:00:5e:00:00:04";
const config = (extra: Record<string, unknown> = {}) => ({
  nve: "nve-ops",
  underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
  ports: [{ name: "eth2", hypervisors: ["hv-1", "hv-2"] }],
  vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan", mtu: 1450 } }],
  vnics: [
    { vnic: V1, port: "eth2", vns: [{ vn: 100, tag: 10, addrs: [{ mac: MAC1, ips: ["10.0.0.1"] }] }] },
    { vnic: V2, port: "eth2", vns: [{ vn: 100, tag: 10, addrs: [{ mac: MAC4, ips: ["10.0.0.4"] }] }] },
  ],
  remotes: [{ nve: "nve-b", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: MAC2, ips: ["10.0.0.2"] }] }],
  ...extra,
});
// A frame from the static VNIC V1 (tag 10) to `dst`.
const frameTo = (dst: string, ip: string) => Buffer.from(udpFrame({ dst, src: MAC1, tag: { vid: 10 }, srcIp: "10.0.0.1", dstIp: ip })).toString("hex");
// The outer IPv4 destination of a VXLAN frame (14 bytes of Ethernet, then the IPv4 header: dst at 16).
const outerDst = (hex: string) => Buffer.from(hex, "hex").subarray(30, 34).join(".");

test("every new command: --help exits 0; bad usage is one clear line and exit 2", async () => {
  const v = await runNvedge(["--version"]);
  assert.is(v.code, 0);
  assert.is(v.out.trim(), `nvedge ${VERSION}`);
  for (const args of [["config", "check", "--help"], ["reload", "--help"], ["log-level", "--help"], ["vnic", "remove", "--help"], ["drain", "--help"],
    ["counters", "clear", "--help"], ["capture", "--help"], ["trace", "--help"], ["show", "--help"], ["vn", "--help"], ["ima", "run", "--help"], ["run", "--help"]]) {
    const r = await runNvedge(args);
    assert.is(r.code, 0, `${args.join(" ")}: ${r.err}`);
    assert.match(r.out, /usage: nvedge/, args.join(" "));
  }
  const bad: [string[], RegExp][] = [
    [["config"], /missing subcommand\nusage: nvedge config check/],
    [["vnic"], /missing subcommand/],
    [["config", "check"], /expected one FILE, got 0/],
    [["config", "lint", "x"], /unknown subcommand "lint"/],
    [["log-level", "loud"], /"loud": not a level/],
    [["vnic", "remove"], /expected one VNIC/],
    [["vnic", "remove", "not-a-uuid"], /not a lower-case RFC 4122 UUID/],
    [["vnic", "delete", V1], /unknown subcommand "delete"/],
    [["counters", "reset"], /unknown subcommand "reset"/],
    [["drain", "now"], /Unexpected argument 'now'/],
    [["capture", "-w", "/tmp/nvl-x.pcapng"], /missing --drops/],
    [["capture", "--drops"], /missing -w FILE/],
    [["capture", "--drops", "-w", "/tmp/nvl-x.pcapng", "--count", "0"], /--count 0: an integer 1\.\.100000/],
    [["trace", "--live", "--mac", "zz"], /--mac zz: not a MAC/],
    [["trace", "--live", "--config", "x.json"], /--live traces the running NVE/],
    [["show", "flows"], /expected one of summary, bindings/],
    [["show", "vns", "--vn", "100"], /filter `show bindings` only/],
    [["show", "--socket", "a", "--store", "b"], /give one of them/],
    [["vn", "disconnect", "blue"], /missing --vnic/],
    [["vn", "create", "--alias", "x", "--password", "pw"], /--password is gone.*--password-file FILE/],
    [["ima", "run", "--password", "pw"], /--password is gone.*--password-file FILE/],
    [["vn", "list", "--password-file", "/nonexistent/nvl-pw"], /--password-file \/nonexistent\/nvl-pw: cannot read: ENOENT/],
    [["run", "--config", "/nonexistent/nvl.json", "--log-level", "chatty"], /--log-level chatty: expected one of/],
    [["run", "--config", "/nonexistent/nvl.json", "--metrics", "9464"], /--metrics 9464: expected HOST:PORT/],
  ];
  for (const [args, re] of bad) {
    const r = await runNvedge(args);
    assert.is(r.code, 2, `${args.join(" ")}: exit ${r.code}: ${r.err}`);
    assert.match(r.err, re, args.join(" "));
  }
  // A running-NVE command with no NVE there: a runtime failure (1), naming the socket.
  const r = await runNvedge(["reload", "--socket", "/tmp/nvl-none.sock"]);
  assert.is(r.code, 1);
  assert.match(r.err, /\/tmp\/nvl-none\.sock: cannot reach the NVE's admin socket \(ENOENT\)/);
});

test("config check: every problem with its JSON path (schema, duplicate and conflicting remotes, MACs); a good file is ok", async () => {
  const dir = mkdtempSync("/tmp/nvl-cfg-");
  try {
    writeFileSync(`${dir}/good.json`, JSON.stringify(config()));
    let r = await runNvedge(["config", "check", `${dir}/good.json`]);
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /good\.json: ok/);
    const bad = config({
      ports: [{ name: "eth2", hypervisors: ["hv-1", "hv-2"] }, { name: "eth3", hypervisors: ["hv-2"] }],
      remotes: [
        { nve: "nve-b", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: MAC1, ips: ["10.0.0.9"] }] },
        { nve: "nve-b", ip: "192.0.2.3", vns: [100], addrs: [] },
        { nve: "nve-c", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: MAC3, ips: ["10.0.0.4"] }] },
      ],
    });
    writeFileSync(`${dir}/bad.json`, JSON.stringify(bad));
    r = await runNvedge(["config", "check", "--json", `${dir}/bad.json`]);
    assert.is(r.code, 2);
    const j = JSON.parse(r.out);
    assert.is(j.ok, false);
    assert.equal(j.problems.map((p: { path: string }) => p.path), [
      "$.ports[1].hypervisors[0]", "$.remotes[0].addrs[0].mac", "$.remotes[1].nve", "$.remotes[2].ip", "$.remotes[2].addrs[0].ips[0]"]);
    assert.match(j.problems[1].message, /local VNIC's \(\$\.vnics\[0\]\.vns\[0\]\.addrs\[0\]\.mac\); a remote cannot claim it/);
    // The loader refuses the same file with the first problem, naming the key (not an op number).
    r = await runNvedge(["run", "--config", `${dir}/bad.json`, "--io", "none", "--memory-store"]);
    assert.is(r.code, 2);
    assert.match(r.err, /bad\.json: ports\.1\.hypervisors\.0: hypervisor "hv-2" is already listed on port "?eth2"?/);
    // What the data plane refuses is reported at the key at fault, not as "op N (field)", by config check, run and trace.
    writeFileSync(`${dir}/fam.json`, JSON.stringify(config({ remotes: [{ nve: "nve-b", ip: "2001:db8::2", vns: [100], addrs: [] }] })));
    r = await runNvedge(["config", "check", `${dir}/fam.json`]);
    assert.is(r.code, 2);
    assert.is(r.err.trim(), `${dir}/fam.json: $.remotes[0].ip: 2001:db8::2 is not of the underlay's address family`);
    for (const args of [["trace", "--config", `${dir}/fam.json`, "--port", "eth2", "--frame", "00"], ["run", "--config", `${dir}/fam.json`, "--io", "none", "--memory-store", "--listen", "127.0.0.1:0"]]) {
      r = await runNvedge(args);
      assert.is(r.code, 2, `${args[0]}: ${r.err}`);
      assert.match(r.err, /fam\.json: remotes\.0\.ip: 2001:db8::2 is not of the underlay's address family/);
    }
    // Schema errors: all of them, not the first.
    writeFileSync(`${dir}/schema.json`, JSON.stringify({ ...config(), vns: [{ id: 100, vni: 5000, profile: { encap: "vxlan", mtu: 20 } }], colour: "red", underlay: { port: "eth1" } }));
    r = await runNvedge(["config", "check", `${dir}/schema.json`]);
    assert.is(r.code, 2);
    for (const line of ['$.colour: unknown key "colour"', "$.underlay.ip: missing (required)", "$.underlay.mac: missing (required)", "$.vns[0].profile.mtu: must be >= 68"])
      assert.ok(r.err.includes(`schema.json: ${line}`), `${line} in:\n${r.err}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a running NVE: summary and views, admin actions, counters clear, metrics (promtool), SIGHUP password reload with the same pid, bad reload refused while forwarding", async () => {
  const dir = mkdtempSync("/tmp/nvl-ops-");
  const port = await freePort();
  const mport = await freePort();
  const hasPasswd = !missingTool("mosquitto_passwd");
  const cfg = config(hasPasswd ? { auth: { passwordFile: `${dir}/passwd` }, log: { level: "info" } } : { log: { level: "info" } });
  if (hasPasswd) {
    execFileSync("mosquitto_passwd", ["-c", "-b", `${dir}/passwd`, "nve-ops", "nve-pw"]);
    execFileSync("mosquitto_passwd", ["-b", `${dir}/passwd`, "hv-1", "hv1-pw"]);
  }
  writeFileSync(`${dir}/nve.json`, JSON.stringify(cfg));
  const S = ["--store", `${dir}/st`];
  const nve = await spawnNvedge(["run", "--config", `${dir}/nve.json`, ...S, "--io", "none", "--listen", `127.0.0.1:${port}`, "--metrics", `127.0.0.1:${mport}`],
    { NVEDGE_MQTT_PASSWORD: "nve-pw" });
  const sock = `${dir}/st/nvedge.sock`;
  const trace = (hex: string) => adminRequest(sock, { cmd: "trace", port: "eth2", frame: hex }) as Promise<{ drop: string | null; outputs: { port: string; frame: string }[] }>;
  try {
    await until(async () => adminRequest(sock, { cmd: "show", what: "ports" }).then(() => true, () => false), 30_000, `admin socket (${nve.err()})`);
    // The first log line names the version; no line has a doubled prefix.
    assert.match(nve.err().split("\n")[0], new RegExp(`nvedge ${VERSION.replace(/\./g, "\\.")} run starting`));
    assert.not.match(nve.err(), /broker: broker:/);

    // Views.
    let r = await runNvedge(["show", ...S]);
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /^NVE nve-ops \(nvedge [^)]+\), up /);
    assert.match(r.out, /broker\s+embedded \(mqtt:\/\/127\.0\.0\.1:\d+\)\s+connected/);
    assert.match(r.out, /hypervisors online 0\/2\s+VNs 1\s+VNICs 2\s+bindings 2\s+remotes 1/);
    r = await runNvedge(["show", "remotes", ...S]);
    assert.match(r.out, /nve-b\s+192\.0\.2\.2\s+100\s+1\s+config/);
    r = await runNvedge(["show", "hypervisors", ...S]);
    assert.match(r.out, /hv-1\s+eth2\s+unknown\s+0/);
    r = await runNvedge(["show", "bindings", "--json", "--mac", MAC2.toUpperCase(), ...S]);
    assert.equal(JSON.parse(r.out).map((b: { mac: string }) => b.mac), [MAC2]);
    r = await runNvedge(["show", "bindings", "--json", "--vn", "blue", "--port", "eth2", ...S]);
    assert.equal(JSON.parse(r.out).map((b: { mac: string }) => b.mac), [MAC1, MAC4]);
    r = await runNvedge(["show", "bindings", "--vn", "purple", ...S]);
    assert.is(r.code, 2);
    assert.match(r.err, /--vn purple: no such VN/);

    // counters clear: `show counters` counts from then on.
    assert.is(outerDst((await trace(frameTo(MAC2, "10.0.0.2"))).outputs[0].frame), "192.0.2.2");
    r = await runNvedge(["show", "counters", "--json", ...S]);
    assert.is(JSON.parse(r.out).frames.rx, 1);
    r = await runNvedge(["counters", "clear", ...S]);
    assert.is(r.code, 0, r.err);
    r = await runNvedge(["show", "counters", "--json", ...S]);
    assert.is(JSON.parse(r.out).frames.rx, 0);
    await trace(frameTo(MAC2, "10.0.0.2"));
    await trace(frameTo(MAC2, "10.0.0.2"));
    r = await runNvedge(["show", "counters", ...S]);
    assert.match(r.out, /frames: rx 2 {2}forwarded 2 .*since counters clear/);

    // /metrics keeps the data plane's monotonic counters, and passes promtool.
    const metrics = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
    assert.match(metrics, /nvedge_frames_received_total\{nve="nve-ops"\} 3\n/);
    assert.match(metrics, /nvedge_port_received_frames_total\{port="eth2",nve="nve-ops"\} 3\n/);
    assert.match(metrics, /nvedge_vn_encapsulated_frames_total\{vn="100",nve="nve-ops"\} 3\n/);
    assert.match(metrics, /nvedge_vnics\{nve="nve-ops"\} 2\n/);
    assert.match(metrics, /nvedge_mqtt_connected\{nve="nve-ops"\} 1\n/);
    assert.ok(!/[0-9a-f]{2}(:[0-9a-f]{2}){5}|0d6c8a8e/.test(metrics), "no MAC or VNIC id in any label");
    if (!missingTool("promtool")) {
      const p = spawnSync("promtool", ["check", "metrics"], { input: metrics, encoding: "utf8" });
      assert.is(p.status, 0, `promtool: ${p.stdout}${p.stderr}`);
    } else console.log("  (promtool missing: scripts/system-deps.sh installs Debian's prometheus)");
    assert.is((await fetch(`http://127.0.0.1:${mport}/healthz`)).status, 200);
    assert.is(await (await fetch(`http://127.0.0.1:${mport}/readyz`)).text(), "ok\n");

    // The log level at run time.
    r = await runNvedge(["log-level", "debug", ...S]);
    assert.is(r.out.trim(), "debug");
    r = await runNvedge(["log-level", ...S]);
    assert.is(r.out.trim(), "debug");
    await runNvedge(["log-level", "info", ...S]);

    // SIGHUP with a new user in the password file: that user logs in; same process.
    if (hasPasswd) {
      const login = (user: string, password: string) => mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: user, password, clientId: `${user}-login`, reconnectPeriod: 0, connectTimeout: 5000 })
        .then(async (c) => { await c.endAsync(); return true; }, () => false);
      assert.is(await login("hv-2", "hv2-pw"), false, "hv-2 is not in the password file yet");
      execFileSync("mosquitto_passwd", ["-b", `${dir}/passwd`, "hv-2", "hv2-pw"]);
      const pid = nve.child.pid!;
      process.kill(pid, "SIGHUP");
      await until(() => /reload: SIGHUP/.test(nve.err()), 10_000, `the reload (${nve.err()})`);
      assert.is(await login("hv-2", "hv2-pw"), true, `hv-2 logs in after SIGHUP:\n${nve.err()}`);
      assert.is(nve.child.exitCode, null);
      assert.is(nve.child.pid, pid);
      assert.match(nve.err(), /broker: reloaded .*passwd \(3 users\)/);
    }

    // A bad configuration on reload is refused; the running one stays and forwards.
    const good = readFileSync(`${dir}/nve.json`, "utf8");
    writeFileSync(`${dir}/nve.json`, JSON.stringify({ ...cfg, remotes: [...cfg.remotes, { nve: "nve-b", ip: "192.0.2.3", vns: [100], addrs: [] }] }));
    r = await runNvedge(["reload", ...S]);
    assert.is(r.code, 1);
    assert.match(r.err, /nvedge reload: the NVE refused: bad-request: .*nve\.json: remotes\.1\.nve: duplicate remote "nve-b"/);
    assert.match(nve.err(), /reload: nvedge reload: refused, the running configuration is kept/);
    let t = await trace(frameTo(MAC2, "10.0.0.2"));
    assert.is(t.drop, null);
    assert.is(outerDst(t.outputs[0].frame), "192.0.2.2");
    writeFileSync(`${dir}/nve.json`, "{ not json");
    r = await runNvedge(["reload", ...S]);
    assert.is(r.code, 1);
    assert.match(r.err, /not valid JSON/);
    // What only a restart can change is refused too, naming the key.
    writeFileSync(`${dir}/nve.json`, JSON.stringify({ ...cfg, underlay: { ...cfg.underlay, ip: "192.0.2.9" } }));
    r = await runNvedge(["reload", ...S]);
    assert.is(r.code, 1);
    assert.match(r.err, /need a restart.*underlay/);

    // A good reload applies the diff: a new remote with a MAC, one VNIC less; what did not change stays.
    const next = JSON.parse(good);
    next.remotes.push({ nve: "nve-c", ip: "192.0.2.3", vns: [100], addrs: [{ vn: 100, mac: MAC3, ips: ["10.0.0.3"] }] });
    next.vnics = next.vnics.filter((v: { vnic: string }) => v.vnic !== V2);
    writeFileSync(`${dir}/nve.json`, JSON.stringify(next));
    r = await runNvedge(["reload", ...S]);
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /reloaded: .*mac\.remote VN 100 02:00:5e:00:00:03 at 192\.0\.2\.3.*static VNICs/);
    t = await trace(frameTo(MAC3, "10.0.0.3"));
    assert.equal(t.outputs.map((o) => outerDst(o.frame)), ["192.0.2.3"]);
    assert.is(outerDst((await trace(frameTo(MAC2, "10.0.0.2"))).outputs[0].frame), "192.0.2.2");
    r = await runNvedge(["show", "bindings", "--json", ...S]);
    assert.equal(JSON.parse(r.out).map((b: { mac: string }) => b.mac), [MAC1, MAC2, MAC3]);
    r = await runNvedge(["show", "remotes", ...S]);
    assert.match(r.out, /nve-c\s+192\.0\.2\.3/);

    // Admin actions from the command line.
    r = await runNvedge(["vn", "disconnect", "blue", "--vnic", V1, ...S]);
    assert.is(r.code, 0, r.err);
    r = await runNvedge(["vnic", "remove", V1, ...S]);
    assert.is(r.code, 1);
    assert.match(r.err, /the NVE refused: unknown-vnic/);
    r = await runNvedge(["drain", ...S]);
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /draining: 2 End Devices told \(hv-1, hv-2\)/);
    r = await runNvedge(["capture", "--drops", "-w", `${dir}/x.pcapng`, ...S]);
    assert.is(r.code, 1);
    assert.match(r.err, /no packet I\/O \(--io none\)/);

    // SIGTERM still stops it cleanly.
    await nve.stop();
    assert.is(await nve.exited, 0, nve.err());
  } finally {
    await nve.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});

test("standard paths: without --store or --admin-socket, run keeps its store in the state directory and its socket in the run directory, where show finds it from any folder", async () => {
  const dir = mkdtempSync("/tmp/nvl-paths-");
  const port = await freePort();
  // What systemd's StateDirectory=/RuntimeDirectory= would set (here under a temporary folder, not /var/lib and /run).
  const env = { STATE_DIRECTORY: `${dir}/lib`, RUNTIME_DIRECTORY: `${dir}/run`, NVEDGE_STATE_DIR: "", NVEDGE_RUN_DIR: "", NVEDGE_SOCKET: "" };
  writeFileSync(`${dir}/nve.json`, JSON.stringify(config()));
  const nve = await spawnNvedge(["run", "--config", `${dir}/nve.json`, "--io", "none", "--listen", `127.0.0.1:${port}`], env);
  try {
    await until(async () => adminRequest(`${dir}/run/nvedge.sock`, { cmd: "show", what: "ports" }).then(() => true, () => false), 30_000, `the socket in the run directory (${nve.err()})`);
    const show = await spawnNvedge(["show", "vns", "--json"], env);
    assert.is(await show.exited, 0, show.err());
    assert.equal(JSON.parse(show.out()).map((v: { alias: string }) => v.alias), ["blue"]);
    assert.ok(readdirSync(`${dir}/lib`).some((f) => f.endsWith(".mdb")), "the LMDB store is in the state directory");
  } finally {
    await nve.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge ima run --metrics: the catalog and bindings as metrics (promtool), JSON logs, the operator's password from --password-file", async () => {
  const { startEmbeddedBroker } = await import("../host/broker/embedded.js");
  const broker = await startEmbeddedBroker({ port: 0, imas: ["ima"], operators: ["operator"], nves: ["nve-a"] });
  const dir = mkdtempSync("/tmp/nvl-imam-");
  const mport = await freePort();
  writeFileSync(`${dir}/ima.json`, JSON.stringify({ operators: ["operator"], vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan" } }] }));
  const ima = await spawnNvedge(["ima", "run", "--config", `${dir}/ima.json`, "--broker", broker.url, "--store", `${dir}/store`, "--metrics", `127.0.0.1:${mport}`, "--log-format", "json"]);
  try {
    await until(async () => (await fetch(`http://127.0.0.1:${mport}/readyz`).then((r) => r.text(), () => "")) === "ok\n", 30_000, `the IMA's /readyz (${ima.err()})`);
    writeFileSync(`${dir}/pw`, "anything\n");
    const r = await runNvedge(["vn", "create", "--alias", "red", "--broker", broker.url, "--password-file", `${dir}/pw`]);
    assert.is(r.code, 0, r.err);
    const m = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
    assert.match(m, /nvedge_ima_vns\{ima="ima"\} 2\n/);
    assert.match(m, /nvedge_ima_frozen_macs\{ima="ima"\} 0\n/);
    assert.match(m, /nvedge_mqtt_connected\{ima="ima"\} 1\n/);
    if (!missingTool("promtool")) {
      const p = spawnSync("promtool", ["check", "metrics"], { input: m, encoding: "utf8" });
      assert.is(p.status, 0, `promtool: ${p.stdout}${p.stderr}`);
    }
    const first = JSON.parse(ima.err().split("\n")[0]);
    assert.equal([first.level, first.service, first.id, first.version], ["info", "ima", "ima", VERSION]);
  } finally {
    await ima.stop();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
