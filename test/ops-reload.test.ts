// SIGHUP on the running processes (issue 13 "SIGHUP and `nvedge reload`"),
// each a real child process, its pid checked unchanged:
// - `nvedge run` with the embedded broker on TLS: the certificate and key
//   files replaced (a renewal from the same CA), SIGHUP, and a new client sees
//   the new server certificate while a connection made before still works; a
//   certificate that does not match its key is refused and the running one kept;
//   after a CA rotation the NVE's own client, and an agent after its SIGHUP,
//   reconnect with the new files;
// - `nvedge ima run`: `nvedge_ima_moves_total` counts each MAC move once (and
//   nothing else); SIGHUP re-reads the configuration file's log level,
//   operators, NVE list and duplicate detection; a bad file or one that
//   changes what needs a restart is refused with everything kept;
// - `nvedge agent run --env-file FILE`: SIGHUP re-reads NVEDGE_LOG_LEVEL from
//   the file (systemd's EnvironmentFile of nvedge-agent@.service).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { imaRequests, mqttRequests } from "./support/mqtt-requests.js";
import { connect as tlsConnect } from "node:tls";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { ImaService } from "../host/ima/service.js";
import { openImaDb } from "../host/ima/db.js";
import { freePort, runNvedge, spawnNvedge, until } from "./support/control-harness.js";
import { makePki } from "./support/pki.js";
import { onPath, requireTool } from "./support/tools.js";

const NVE = "nve-hup";
const nveConfig = (extra: Record<string, unknown> = {}) => ({
  nve: NVE,
  underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
  ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
  vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan" } }],
  ...extra,
});

/** hv's requests to the NVE over `c` (PROTOCOL.md §2): nve/{NVE}/req/{hv}, answered on hv/{hv}/rsp. */
function hvSession(c: MqttClient, hv: string) {
  return mqttRequests(c, { who: hv, reqTopic: `nvo3/v1/nve/${NVE}/req/${hv}`, rsp: `nvo3/v1/hv/${hv}/rsp` });
}

if (requireTool("openssl", () => onPath("openssl"), "the embedded broker's TLS files re-read on SIGHUP")) {
  test("nvedge run, embedded broker on TLS: new certificate files + SIGHUP: a new client sees the new certificate, an older connection still works, same pid; a mismatched pair is refused", async () => {
    const dir = mkdtempSync("/tmp/nvl-tlshup-");
    const pki = makePki(join(dir, "pki"), [NVE, "hv-1"]);
    const first = pki.certFor(NVE), renewed = pki.reissue(NVE, "renewed");
    // The files the configuration names; the broker serves them and the NVE's own client presents them.
    const live = { cert: join(dir, "live.crt"), key: join(dir, "live.key"), ca: join(dir, "live-ca.crt") };
    copyFileSync(pki.caFile, live.ca);
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    writeFileSync(join(dir, "nve.json"), JSON.stringify(nveConfig({ auth: { tls: live } })));
    const port = await freePort();
    const S = ["--store", join(dir, "st")];
    const nve = await spawnNvedge(["run", "--config", join(dir, "nve.json"), ...S, "--memory-store", "--io", "none", "--listen", `127.0.0.1:${port}`]);
    const hvTls = { ca: readFileSync(pki.caFile), cert: readFileSync(pki.certFor("hv-1").cert), key: readFileSync(pki.certFor("hv-1").key) };
    const fingerprint = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256;
    // The certificate a new TLS client is shown (a full handshake: no session is offered for resumption).
    const served = (creds = hvTls) => new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port, ...creds, servername: "localhost" }, () => {
        const f = s.getPeerCertificate().fingerprint256;
        s.end();
        resolve(f);
      });
      s.once("error", reject);
      s.setTimeout(10_000, () => s.destroy(new Error("TLS handshake timed out")));
    });
    const clients: MqttClient[] = [];
    const aLive = { cert: join(dir, "a.crt"), key: join(dir, "a.key"), ca: join(dir, "a-ca.crt") };
    const aSock = join(dir, "agent.sock");
    let agent!: Awaited<ReturnType<typeof spawnNvedge>>;
    const session = async (clientId: string) => {
      const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ...hvTls, clientId, reconnectPeriod: 0, connectTimeout: 10_000 });
      clients.push(c);
      const s = await hvSession(c, "hv-1");
      return { c, s };
    };
    try {
      await until(() => /running: --io none/.test(nve.err()), 30_000, `nvedge run (${nve.err()})`);
      assert.ok(/auth ok: method=tls identity=nve-hup/.test(nve.err()), "the NVE reached its own broker with the certificate");
      assert.is(await served(), fingerprint(first.cert));
      // An agent on TLS too (its --tls-* files, re-read on its own SIGHUP).
      copyFileSync(pki.certFor("hv-1").cert, aLive.cert);
      copyFileSync(pki.certFor("hv-1").key, aLive.key);
      copyFileSync(pki.caFile, aLive.ca);
      agent = await spawnNvedge(["agent", "run", "--broker", `mqtts://127.0.0.1:${port}`, "--hv", "hv-1", "--nve", NVE, "--socket", aSock,
        "--state", join(dir, "agent.json"), "--tls-cert", aLive.cert, "--tls-key", aLive.key, "--tls-ca", aLive.ca]);
      const a0 = agent;
      await until(async () => (await runNvedge(["agent", "show", "--json", "--socket", aSock])).code === 0, 30_000, `the agent (${a0.err()})`);
      const old = await session("hv-1-old");
      const hello = await old.s.req("hello", { agent: "test" });
      assert.ok(hello.ok, JSON.stringify(hello));
      assert.is(hello.nve, NVE);

      // The renewal: both files replaced, then SIGHUP.
      copyFileSync(renewed.key, live.key);
      copyFileSync(renewed.cert, live.cert);
      assert.is.not(fingerprint(live.cert), fingerprint(first.cert));
      const pid = nve.child.pid!;
      process.kill(pid, "SIGHUP");
      await until(() => /reload: SIGHUP: /.test(nve.err()), 10_000, `the reload (${nve.err()})`);
      assert.match(nve.err(), /broker: reloaded the TLS certificate, key and CA \(.*live\.crt\)/);
      assert.not.match(nve.err(), /reload: SIGHUP: refused/);
      assert.is(await served(), fingerprint(renewed.cert), "a new client sees the renewed certificate");
      // The connection made before the reload: still up, still answered.
      assert.ok(old.c.connected);
      const sync = await old.s.req("vn.profile", { vn: { id: 100 } });
      assert.ok(sync.ok, `the older connection is still served: ${JSON.stringify(sync)}`);
      // A new MQTT session over the renewed certificate.
      const fresh = await session("hv-1-new");
      const hello2 = await fresh.s.req("hello", { agent: "test" });
      assert.ok(hello2.ok, JSON.stringify(hello2));
      assert.is(nve.child.pid, pid);
      assert.is(nve.child.exitCode, null);

      // A certificate that does not match its key (only one file replaced) is
      // refused: `nvedge reload` says why, and the renewed certificate stays.
      copyFileSync(first.cert, live.cert);
      const r = await runNvedge(["reload", ...S]);
      assert.is(r.code, 1, r.out);
      assert.match(r.err, /auth\.tls: .*live\.crt with .*live\.key .*: .*the running certificate is kept/);
      assert.match(nve.err(), /reload: nvedge reload: refused, the running configuration is kept: auth\.tls/);
      assert.is(await served(), fingerprint(renewed.cert), "the running certificate is kept");
      const again = await old.s.req("vn.profile", { vn: { id: 100 } });
      assert.ok(again.ok, JSON.stringify(again));
      assert.is(nve.child.pid, pid);

      // A CA rotation: certificate, key and CA all from a new CA. The broker
      // serves the new certificate and trusts only the new CA; the NVE's own
      // client re-read the files too, so when its session is taken over (and
      // it reconnects) it presents the new certificate and trusts the new CA.
      const rotated = makePki(join(dir, "pki2"), [NVE, "hv-1"], "rotated CA");
      copyFileSync(rotated.certFor(NVE).key, live.key);
      copyFileSync(rotated.certFor(NVE).cert, live.cert);
      copyFileSync(rotated.caFile, live.ca);
      const r2 = await runNvedge(["reload", ...S]);
      assert.is(r2.code, 0, r2.err);
      // The agent's files too, then its SIGHUP.
      copyFileSync(rotated.certFor("hv-1").key, aLive.key);
      copyFileSync(rotated.certFor("hv-1").cert, aLive.cert);
      copyFileSync(rotated.caFile, aLive.ca);
      const aFrom = agent.err().length;
      process.kill(agent.child.pid!, "SIGHUP");
      await until(() => /reload: SIGHUP: client certificate re-read \(for the next connection\)/.test(agent.err().slice(aFrom)), 10_000, `the agent's reload (${agent.err().slice(aFrom)})`);
      const hvNew = { ca: readFileSync(rotated.caFile), cert: readFileSync(rotated.certFor("hv-1").cert), key: readFileSync(rotated.certFor("hv-1").key) };
      assert.is(await served(hvNew), fingerprint(rotated.certFor(NVE).cert));
      assert.ok((await old.s.req("vn.profile", { vn: { id: 100 } })).ok, "the connection from before the rotation is still served");
      const nveClient = /auth ok: method=tls identity=nve-hup client="([^"]+)"/.exec(nve.err())![1];
      const logins = () => nve.err().split(`auth ok: method=tls identity=nve-hup client="${nveClient}"`).length - 1;
      const before = logins();
      // [MQTT-3.1.4-2] a CONNECT with the client id in use takes the session over: the NVE's client is disconnected and reconnects.
      const kick = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ca: hvNew.ca, cert: readFileSync(rotated.certFor(NVE).cert), key: readFileSync(rotated.certFor(NVE).key),
        clientId: nveClient, reconnectPeriod: 0, connectTimeout: 10_000 });
      await kick.endAsync();
      await until(() => logins() >= before + 2, 15_000, `the NVE's client back with the rotated certificate (${nve.err()})`);
      const sum = await runNvedge(["show", ...S]);
      assert.match(sum.out, /broker\s+embedded \(mqtts:\/\/127\.0\.0\.1:\d+\)\s+connected/, sum.out + sum.err);
      // The agent's session taken over in turn: it reconnects with its rotated files, then hello + sync.
      const agentClient = /auth ok: method=tls identity=hv-1 client="(hv-1-agent-[^"]+)"/.exec(nve.err())![1];
      const kickA = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ...hvNew, clientId: agentClient, reconnectPeriod: 0, connectTimeout: 10_000 });
      await kickA.endAsync();
      await until(() => /mqtt: reconnected: hello \+ sync/.test(agent.err().slice(aFrom)), 15_000, `the agent back with the rotated certificate (${agent.err().slice(aFrom)})`);
      await until(async () => { const r = await runNvedge(["agent", "show", "--json", "--socket", aSock]); return r.code === 0 && JSON.parse(r.out).connected === true; }, 15_000, "the agent connected");
      // A certificate that does not match its key, on the agent's SIGHUP: refused, the rotated one kept.
      copyFileSync(pki.certFor("hv-1").cert, aLive.cert);
      const aBad = agent.err().length;
      process.kill(agent.child.pid!, "SIGHUP");
      await until(() => /reload: SIGHUP: refused, the running certificate is kept: --tls: .*a\.crt with .*a\.key/.test(agent.err().slice(aBad)), 10_000, `the agent's refusal (${agent.err().slice(aBad)})`);
    } finally {
      for (const c of clients) await c.endAsync(true).catch(() => {});
      await agent?.stop();
      await nve.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** An NVE or operator talking to the IMA (PROTOCOL.md §6): requests on ima/req/{who}, answers on ima/rsp/{who}. */
async function imaPeer(url: string, who: string) {
  return imaRequests(await mqtt.connectAsync(url, { username: who, clientId: `${who}-t`, reconnectPeriod: 0 }), who);
}

test("nvedge ima run: nvedge_ima_moves_total counts each MAC move once; SIGHUP re-reads log.level, operators, nves and duplicate; a bad file or a restart-only change is refused, same pid", async () => {
  const broker = await startEmbeddedBroker({ port: 0, imas: ["ima"], operators: ["alice"], nves: ["nve-a", "nve-b", "nve-c"] });
  const dir = mkdtempSync("/tmp/nvl-imahup-");
  const file = join(dir, "ima.json");
  const base = { nves: [{ id: "nve-a", ip: "192.0.2.1" }, { id: "nve-b", ip: "192.0.2.2" }], vns: [{ id: 100, alias: "blue" }], log: { level: "info" } };
  writeFileSync(file, JSON.stringify(base));
  const mport = await freePort();
  const ima = await spawnNvedge(["ima", "run", "--config", file, "--broker", broker.url, "--store", join(dir, "store"), "--metrics", `127.0.0.1:${mport}`]);
  const peers: MqttClient[] = [];
  const peer = async (who: string) => { const p = await imaPeer(broker.url, who); peers.push(p.c); return p; };
  const moves = async () => {
    const text = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
    const m = /^nvedge_ima_moves_total(?:\{[^}]*\})? (\d+)$/m.exec(text);
    assert.ok(m, `nvedge_ima_moves_total in:\n${text}`);
    assert.match(text, /^# TYPE nvedge_ima_moves_total counter$/m);
    return Number(m![1]);
  };
  // SIGHUP, then wait for `re` in what the IMA logs from then on.
  const hup = async (re: RegExp) => {
    const from = ima.err().length;
    process.kill(ima.child.pid!, "SIGHUP");
    await until(() => re.test(ima.err().slice(from)), 10_000, `${re} after SIGHUP (${ima.err().slice(from)})`);
  };
  const M1 = "02:00:5e:00:00:01", M2 = "02:00:5e:00:00:02";
  try {
    await until(() => /metrics: serving/.test(ima.err()), 30_000, `nvedge ima run (${ima.err()})`);
    const pid = ima.child.pid;
    const a = await peer("nve-a"), b = await peer("nve-b");
    assert.ok((await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" })).ok);
    assert.ok((await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" })).ok);

    // The counter: a new MAC, the holder's update and another MAC are not moves; each move is one.
    assert.is(await moves(), 0);
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 0);
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1"] })).seq, 0);
    assert.ok((await b.req("bind.announce", { vn: { id: 100 }, mac: M2 })).ok);
    assert.is(await moves(), 0, "no move yet");
    assert.is((await b.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 1);
    assert.is(await moves(), 1, "a move increments it by one");
    assert.is((await b.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 1);
    assert.is(await moves(), 1, "the new holder repeating itself is not a move");
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 2);
    assert.is(await moves(), 2, "and back: one more");

    // SIGHUP: alice becomes an operator, nve-b leaves the list, nve-c joins it, duplicate detection and the log level change.
    const alice = await peer("alice");
    assert.is((await alice.req("vn.list")).error.code, "not-authorized", "not an operator yet");
    writeFileSync(file, JSON.stringify({ ...base, operators: ["alice"], nves: [base.nves[0], { id: "nve-c", ip: "192.0.2.3" }],
      duplicate: { moves: 3 }, log: { level: "debug" } }));
    await hup(/reload: SIGHUP: operators alice; NVE nve-c \(192\.0\.2\.3\) added; NVE nve-b removed; duplicate detection 3 moves in 180000 ms; withdrawing the state of nve-b/);
    await until(() => /reload: SIGHUP: log level info → debug/.test(ima.err()), 10_000, "the level change");
    await until(() => /nve-b is no longer listed in nves with the IP its entries carry \(reload\): left 1 flood lists, 1 bindings withdrawn/.test(ima.err()), 10_000, `nve-b's state withdrawn (${ima.err()})`);
    assert.equal((await alice.req("vn.list")).vns.map((v: { id: number }) => v.id), [100], "alice is an operator now");
    assert.is((await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" })).error.code, "not-authorized", "nve-b is no longer served");
    const c = await peer("nve-c");
    assert.ok((await c.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.3" })).ok, "nve-c is served");
    // duplicate.moves 3 (default 5): with two moves already in the window, the third (to nve-c) is allowed and the fourth freezes.
    assert.is((await c.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 3);
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).error.code, "address-conflict", "the new duplicate limit applies");
    assert.is(await moves(), 3, "the refused move is not counted");

    // log.level warn: info lines stop, warnings still show.
    writeFileSync(file, JSON.stringify({ ...base, operators: ["alice"], nves: [base.nves[0], { id: "nve-c", ip: "192.0.2.3" }], duplicate: { moves: 3 }, log: { level: "warn" } }));
    await hup(/reload: SIGHUP: log level debug → warn/);
    assert.ok((await c.req("vtep.leave", { vn: { id: 100 }, ip: "192.0.2.3" })).ok);
    // (a refusal is logged once per requester, op and code every 10 s: another op than before)
    assert.is((await b.req("bind.announce", { vn: { id: 100 }, mac: M2 })).error.code, "not-authorized");
    await until(() => /request nve-b-\d+ \(bind\.announce\) from nve-b: not-authorized/.test(ima.err().split("log level debug → warn")[1]), 10_000, `the warning (${ima.err()})`);
    assert.not.match(ima.err(), /nve-c left the flood list of VN 100/, "an info line at warn");

    // A bad file and a restart-only change are refused; the running configuration stays.
    writeFileSync(file, JSON.stringify({ ...base, nves: [{ id: "nve-a", ip: "0.0.0.0" }] }));
    await hup(/reload: SIGHUP: refused, the running configuration is kept: .*ima\.json: nves\.0\.ip: "0\.0\.0\.0" is not a unicast/);
    writeFileSync(file, JSON.stringify({ ...base, ima: "ima-2" }));
    await hup(/reload: SIGHUP: refused, the running configuration is kept: .*ima\.json: ima: these keys changed and need a restart \(nvedge ima run\): ima/);
    assert.ok((await c.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.3" })).ok, "nve-c still served");
    assert.ok((await alice.req("vn.list")).ok, "alice still an operator");
    assert.is(ima.child.pid, pid);
    assert.is(ima.child.exitCode, null);
  } finally {
    for (const p of peers) await p.endAsync(true).catch(() => {});
    await ima.stop();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge ima run with ha: --metrics tells the active instance (its figures, ready) from the standby (not ready); SIGHUP re-reads each, and the standby that takes over serves with its new file", async () => {
  const broker = await startEmbeddedBroker({ port: 0, imas: ["ima"], operators: ["alice"], nves: ["nve-a"] });
  const dir = mkdtempSync("/tmp/nvl-imahahup-");
  const base = { ima: "ima", nves: [{ id: "nve-a", ip: "192.0.2.1" }], vns: [{ id: 100, alias: "blue" }] };
  const file = (n: string) => join(dir, `${n}.json`);
  const write = (n: string, priority: number, extra: Record<string, unknown> = {}) =>
    writeFileSync(file(n), JSON.stringify({ ...base, ha: { instance: n, priority, holdMs: 3000 }, ...extra }));
  write("i1", 2);
  write("i2", 1);
  const [m1, m2] = [await freePort(), await freePort()];
  const run = (n: string, mport: number) => spawnNvedge(["ima", "run", "--config", file(n), "--broker", broker.url, "--store", join(dir, `${n}-store`), "--metrics", `127.0.0.1:${mport}`]);
  const i1 = await run("i1", m1);
  let i2: Awaited<ReturnType<typeof spawnNvedge>> | undefined;
  const peers: MqttClient[] = [];
  const scrape = async (mport: number) => {
    const text = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
    const v = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
    return { active: v("nvedge_ima_ha_active"), vns: v("nvedge_ima_vns"), ready: (await fetch(`http://127.0.0.1:${mport}/readyz`)).status };
  };
  const hup = async (x: typeof i1, re: RegExp) => {
    const from = x.err().length;
    process.kill(x.child.pid!, "SIGHUP");
    await until(() => re.test(x.err().slice(from)), 10_000, `${re} after SIGHUP (${x.err().slice(from)})`);
  };
  try {
    await until(() => /i1 is the active IMA/.test(i1.err()) && /metrics: serving/.test(i1.err()), 30_000, `i1 active (${i1.err()})`);
    i2 = await run("i2", m2);
    const s2 = i2;
    await until(() => /i2 is standby/.test(s2.err()) && /metrics: serving/.test(s2.err()), 30_000, `i2 standing by (${s2.err()})`);
    assert.equal(await scrape(m1), { active: 1, vns: 1, ready: 200 }, "the active: its figures, ready");
    assert.equal(await scrape(m2), { active: 0, vns: 0, ready: 503 }, "the standby: no figures of its own, not ready");

    const alice = await imaPeer(broker.url, "alice");
    peers.push(alice.c);
    assert.is((await alice.req("vn.list")).error.code, "not-authorized", "not an operator yet");
    write("i1", 2, { operators: ["alice"] });
    write("i2", 1, { operators: ["alice"] });
    await hup(i1, /reload: SIGHUP: operators alice/);
    await hup(i2, /reload: SIGHUP: operators alice/);
    assert.equal((await alice.req("vn.list")).vns.map((v: { id: number }) => v.id), [100], "the active took the new operators");
    // a restart-only change is refused by an ha instance too
    write("i2", 1, { operators: ["alice"], ha: { instance: "i2", priority: 5, holdMs: 3000 } });
    await hup(i2, /reload: SIGHUP: refused, the running configuration is kept: .*i2\.json: ha: these keys changed and need a restart/);

    // The active stops: the standby takes over with the file it re-read.
    await i1.stop();
    await until(() => /i2 is the active IMA/.test(s2.err()), 20_000, `i2 takes over (${s2.err()})`);
    assert.equal(await scrape(m2), { active: 1, vns: 1, ready: 200 }, "the new active: its figures, ready");
    assert.equal((await alice.req("vn.list")).vns.map((v: { id: number }) => v.id), [100], "the new active serves alice as an operator");
  } finally {
    for (const p of peers) await p.endAsync(true).catch(() => {});
    await i1.stop();
    await i2?.stop();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("IMA moves are counted once the store took them: a move whose batch the store refuses is not counted, its retry is", async () => {
  const broker = await startEmbeddedBroker({ port: 0, imas: ["ima"], nves: ["nve-a", "nve-b"] });
  const dir = mkdtempSync("/tmp/nvl-imamoves-");
  const db = openImaDb(join(dir, "store"));
  let failNext = false;
  const write = db.write.bind(db);
  // The store refuses the next write (a full disk), as test/support/faulty-store.ts does for the NVE's store.
  db.write = (changes) => {
    if (failNext) { failNext = false; return Promise.reject(new Error("ENOSPC: no space left on device")); }
    return write(changes);
  };
  const ima = await ImaService.start({ settings: { nves: [{ id: "nve-a", ip: "192.0.2.1" }, { id: "nve-b", ip: "192.0.2.2" }] },
    broker: { url: broker.url, reconnectPeriodMs: 0 }, store: db, seed: [{ id: 100, alias: "blue" }] });
  const peers: MqttClient[] = [];
  try {
    const a = await imaPeer(broker.url, "nve-a"), b = await imaPeer(broker.url, "nve-b");
    peers.push(a.c, b.c);
    assert.ok((await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" })).ok);
    assert.ok((await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" })).ok);
    assert.ok((await a.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5e:00:00:01" })).ok);
    failNext = true;
    const refused = await b.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5e:00:00:01" });
    assert.is(refused.error?.code, "internal", JSON.stringify(refused));
    assert.is(ima.stats.moves, 0, "the store refused the move: not counted");
    assert.is((await b.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5e:00:00:01" })).seq, 1, "the retry is the move (seq 1: the refused one left no trace)");
    assert.is(ima.stats.moves, 1);
  } finally {
    for (const c of peers) await c.endAsync(true).catch(() => {});
    await ima.stop();
    await db.close().catch(() => {});
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

if (requireTool("openssl", () => onPath("openssl"), "the IMA's client certificate re-read on SIGHUP")) {
  test("nvedge ima run on TLS: after a CA rotation, SIGHUP re-reads its certificate; taken over, it reconnects with the new one", async () => {
    const dir = mkdtempSync("/tmp/nvl-imatls-");
    const [p1, p2] = [makePki(join(dir, "p1"), ["ima", "nve-a"]), makePki(join(dir, "p2"), ["ima", "nve-a"], "rotated CA")];
    // The broker's files and the IMA's, each replaced in place at the rotation.
    const bLive = { cert: join(dir, "b.crt"), key: join(dir, "b.key"), ca: join(dir, "b-ca.crt") };
    const iLive = { cert: join(dir, "i.crt"), key: join(dir, "i.key"), ca: join(dir, "i-ca.crt") };
    const put = (p: typeof p1) => {
      for (const [to, from] of [[bLive.cert, p.serverCert], [bLive.key, p.serverKey], [bLive.ca, p.caFile],
        [iLive.cert, p.certFor("ima").cert], [iLive.key, p.certFor("ima").key], [iLive.ca, p.caFile]]) copyFileSync(from, to);
    };
    put(p1);
    const broker = await startEmbeddedBroker({ port: 0, tls: bLive, imas: ["ima"], nves: ["nve-a"] });
    const file = join(dir, "ima.json");
    writeFileSync(file, JSON.stringify({ auth: { tls: iLive }, nves: [{ id: "nve-a", ip: "192.0.2.1" }], vns: [{ id: 100, alias: "blue" }] }));
    const ima = await spawnNvedge(["ima", "run", "--config", file, "--broker", broker.url, "--store", join(dir, "store")]);
    const clients: MqttClient[] = [];
    const as = (p: typeof p1, who: string, clientId: string, clean = true) => mqtt.connectAsync(broker.url, { ca: readFileSync(p.caFile),
      cert: readFileSync(p.certFor(who).cert), key: readFileSync(p.certFor(who).key), clientId, clean, reconnectPeriod: 0, connectTimeout: 10_000 });
    try {
      await until(() => /serving PROTOCOL\.md §6/.test(ima.err()), 30_000, `nvedge ima run (${ima.err()})`);
      const pid = ima.child.pid;
      put(p2);
      broker.reload();
      const from = ima.err().length;
      process.kill(ima.child.pid!, "SIGHUP");
      await until(() => /reload: SIGHUP: client certificate re-read \(for the next connection\)/.test(ima.err().slice(from)), 10_000, `the reload (${ima.err().slice(from)})`);
      // [MQTT-3.1.4-2] the IMA's session taken over (its client id is its identity): it reconnects, with the rotated files.
      const kick = await as(p2, "ima", "ima", false);
      await kick.endAsync();
      await until(() => /ima: mqtt: reconnected/.test(ima.err().slice(from)), 15_000, `the IMA back with the rotated certificate (${ima.err().slice(from)})`);
      // And serves an NVE of the new CA.
      const c = await as(p2, "nve-a", "nve-a-t");
      clients.push(c);
      await c.subscribeAsync("nvo3/v1/ima/rsp/nve-a", { qos: 1 });
      const answer = new Promise<any>((resolve) => c.on("message", (_t, p) => resolve(JSON.parse(p.toString()))));
      c.publish("nvo3/v1/ima/req/nve-a", JSON.stringify({ id: "j1", op: "vtep.join", vn: { id: 100 }, ip: "192.0.2.1" }), { qos: 1 });
      const r = await Promise.race([answer, new Promise((_, rej) => setTimeout(() => rej(new Error(`no answer from the IMA (${ima.err()})`)), 10_000))]) as any;
      assert.ok(r.ok, JSON.stringify(r));
      assert.is(ima.child.pid, pid);
    } finally {
      for (const c of clients) await c.endAsync(true).catch(() => {});
      await ima.stop();
      await broker.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("nvedge agent run --env-file: the file's NVEDGE_LOG_LEVEL at start and again on SIGHUP; a bad level or a changed NVE is refused, same pid", async () => {
  const dir = mkdtempSync("/tmp/nvl-agenthup-");
  const port = await freePort();
  writeFileSync(join(dir, "nve.json"), JSON.stringify(nveConfig()));
  const nve = await spawnNvedge(["run", "--config", join(dir, "nve.json"), "--store", join(dir, "st"), "--memory-store", "--io", "none", "--listen", `127.0.0.1:${port}`]);
  const envFile = join(dir, "agent-hv-1.env");
  const sock = join(dir, "agent.sock");
  writeFileSync(envFile, `# as /etc/nvedge/agent-hv-1.env\nNVEDGE_NVE=${NVE}\nNVEDGE_LOG_LEVEL=warn\n`);
  let agent: Awaited<ReturnType<typeof spawnNvedge>> | undefined;
  try {
    await until(() => /running: --io none/.test(nve.err()), 30_000, `nvedge run (${nve.err()})`);
    // $NVEDGE_LOG_LEVEL says debug; with --env-file the file's warn is the level.
    agent = await spawnNvedge(["agent", "run", "--broker", `mqtt://127.0.0.1:${port}`, "--hv", "hv-1", "--nve", NVE, "--socket", sock,
      "--state", join(dir, "agent.json"), "--env-file", envFile], { NVEDGE_LOG_LEVEL: "debug" });
    const a = agent;
    await until(async () => (await runNvedge(["agent", "show", "--json", "--socket", sock])).code === 0, 30_000, `the agent (${a.err()})`);
    const pid = a.child.pid;
    assert.not.match(a.err(), /running: broker/, "info is not logged at warn");
    const hup = async (re: RegExp) => {
      const from = a.err().length;
      process.kill(a.child.pid!, "SIGHUP");
      await until(() => re.test(a.err().slice(from)), 10_000, `${re} after SIGHUP (${a.err().slice(from)})`);
    };
    writeFileSync(envFile, `NVEDGE_NVE=${NVE}\nNVEDGE_LOG_LEVEL=info\n`);
    await hup(/reload: SIGHUP: log level warn → info \(.*agent-hv-1\.env\)/);
    writeFileSync(envFile, `NVEDGE_NVE=${NVE}\nNVEDGE_LOG_LEVEL=loud\n`);
    await hup(/reload: SIGHUP: refused, the running settings are kept: --env-file .*agent-hv-1\.env: NVEDGE_LOG_LEVEL=loud: expected one of fatal, error/);
    writeFileSync(envFile, `NVEDGE_NVE=nve-other\nNVEDGE_LOG_LEVEL=debug\n`);
    await hup(/reload: SIGHUP: refused, the running settings are kept: .*agent-hv-1\.env: NVEDGE_NVE changed: a restart applies it/);
    // The level stayed info: the reload's own info line shows, and nothing moved to debug.
    writeFileSync(envFile, `NVEDGE_NVE=${NVE}\nNVEDGE_LOG_LEVEL=info\n`);
    await hup(/reload: SIGHUP: no change \(log level info\)/);
    const show = await runNvedge(["agent", "show", "--json", "--socket", sock]);
    assert.is(show.code, 0, show.err);
    assert.is(JSON.parse(show.out).connected, true);
    assert.is(a.child.pid, pid);
    assert.is(a.child.exitCode, null);
    // A bad level at start is a usage error (exit 2) naming the file and key.
    writeFileSync(envFile, "NVEDGE_LOG_LEVEL=loud\n");
    const r = await runNvedge(["agent", "run", "--broker", `mqtt://127.0.0.1:${port}`, "--hv", "hv-1", "--nve", NVE, "--socket", join(dir, "b.sock"), "--env-file", envFile]);
    assert.is(r.code, 2, r.err);
    assert.match(r.err, /--env-file .*agent-hv-1\.env: NVEDGE_LOG_LEVEL=loud: expected one of/);
  } finally {
    await agent?.stop();
    await nve.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
