// `nvedge ima run` and `nvedge vn create|delete|list|set-profile|frozen|unfreeze` through the
// real CLI (INTERFACES.md) against the embedded broker: tables and --json,
// the IMA's refusals as one clear line with exit 1, usage and configuration
// errors with exit 2, and a graceful stop on SIGINT.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";
import { startEmbeddedBroker } from "../host/broker/embedded.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = join(ROOT, "bin", "nvedge.js");

function run(args: string[], timeout = 20_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout }, (e, out, err) => {
      resolve({ code: e ? (typeof e.code === "number" ? e.code : -1) : 0, out: String(out), err: String(err) });
    });
  });
}

test("nvedge ima run + nvedge vn: create, list, set-profile, delete; refusals and usage errors", async () => {
  const broker = await startEmbeddedBroker({ port: 0, imas: ["ima"], operators: ["operator"], nves: ["nve-a", "nve-b"] });
  const dir = mkdtempSync(join(tmpdir(), "nvl-imacli-"));
  let ima: ChildProcess | undefined;
  try {
    const cfg = join(dir, "ima.json");
    writeFileSync(cfg, JSON.stringify({ operators: ["operator"], nves: [{ id: "nve-a", ip: "192.0.2.1" }, { id: "nve-b", ip: "192.0.2.2" }],
      duplicate: { moves: 1 }, vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan" } }] }));
    const child = spawn(process.execPath, [BIN, "ima", "run", "--config", cfg, "--broker", broker.url, "--store", join(dir, "store")], { stdio: ["ignore", "ignore", "pipe"] });
    ima = child;
    let log = "";
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the IMA did not start within 15 s:\n${log}`)), 15_000);
      child.stderr!.on("data", (d) => {
        log += d;
        if (log.includes("serving PROTOCOL.md §6")) { clearTimeout(t); resolve(); }
      });
      child.once("exit", (c) => { clearTimeout(t); reject(new Error(`the IMA exited with ${c}:\n${log}`)); });
    });
    const B = ["--broker", broker.url];

    const list = await run(["vn", "list", "--json", ...B]);
    assert.is(list.code, 0, list.err);
    const vns = JSON.parse(list.out);
    assert.equal(vns.map((v: any) => [v.id, v.alias, v.vni]), [[100, "blue", 5000]], "seeded from the file");

    const created = await run(["vn", "create", "--alias", "red", "--encap", "geneve", "--mtu", "1400", "--json", ...B]);
    assert.is(created.code, 0, created.err);
    const red = JSON.parse(created.out);
    assert.is(red.id, 1);
    assert.is(red.vni, 4096);
    assert.is(red.profile.encap, "geneve");
    assert.is(red.profile.mtu, 1400);

    const dup = await run(["vn", "create", "--alias", "red", "--vni", "9", ...B]);
    assert.is(dup.code, 1);
    assert.is(dup.err.trim(), `nvedge vn create: the IMA refused: bad-request: alias "red" is already VN 1's (field alias)`);

    const sp = await run(["vn", "set-profile", "red", "--profile", '{"encap":"vxlan","mtu":9000}', "--json", ...B]);
    assert.is(sp.code, 0, sp.err);
    assert.is(JSON.parse(sp.out).profile.mtu, 9000);

    // A duplicate MAC (RFC 7432 §15, `duplicate.moves` 1): two NVEs take it in
    // turn until the IMA freezes it; the operator lists it and lifts the freeze.
    const M = "02:00:5e:00:00:07";
    const nve = async (who: string, ip: string) => {
      const c = await mqtt.connectAsync(broker.url, { username: who, clientId: `${who}-t`, reconnectPeriod: 0 });
      await c.subscribeAsync(`nvo3/v1/ima/rsp/${who}`, { qos: 1 });
      let n = 0;
      const req = (op: string, body: object) => new Promise<any>((resolve) => {
        const id = `${who}-${++n}`;
        const on = (_t: string, p: Buffer) => { const r = JSON.parse(p.toString()); if (r.id === id) { c.off("message", on); resolve(r); } };
        c.on("message", on);
        c.publish(`nvo3/v1/ima/req/${who}`, JSON.stringify({ id, op, ...body }), { qos: 1 });
      });
      assert.ok((await req("vtep.join", { vn: { id: 100 }, ip })).ok);
      return { c, announce: () => req("bind.announce", { vn: { id: 100 }, mac: M }) };
    };
    const na = await nve("nve-a", "192.0.2.1"), nb = await nve("nve-b", "192.0.2.2");
    try {
      assert.ok((await na.announce()).ok);
      assert.ok((await nb.announce()).ok, "one move");
      assert.is((await na.announce()).error.code, "address-conflict", "the second move freezes it at nve-b");
      const frozen = await run(["vn", "frozen", "--json", ...B]);
      assert.is(frozen.code, 0, frozen.err);
      assert.equal(JSON.parse(frozen.out), [{ vn: { id: 100 }, mac: M, nve: "nve-b", ip: "192.0.2.2", seq: 1, moves: 1 }]);
      const ft = await run(["vn", "frozen", "blue", ...B]);
      assert.match(ft.out, new RegExp(`^VN\\s+MAC\\s+NVE\\s+IP\\s+SEQ\\s+MOVES\n100\\s+${M}\\s+nve-b\\s+192\\.0\\.2\\.2\\s+1\\s+1\n$`));
      const un = await run(["vn", "unfreeze", "blue", M.toUpperCase(), ...B]);
      assert.is(un.code, 0, un.err);
      assert.is(un.out.trim(), `MAC ${M} in VN 100 is not frozen; it stays at nve-b (192.0.2.2, seq 1)`);
      assert.is((await run(["vn", "frozen", ...B])).out.trim(), "no frozen MACs");
      assert.is((await na.announce()).seq, 2, "after the unfreeze the move is accepted");
      const none = await run(["vn", "unfreeze", "blue", "02:00:5e:00:00:99", ...B]);
      assert.is(none.code, 1);
      assert.is(none.err.trim(), "nvedge vn unfreeze: the IMA refused: bad-request: no binding of MAC 02:00:5e:00:00:99 in VN 100 (field mac)");
      const notOperator = await run(["vn", "frozen", "--as", "nve-a", ...B]);
      assert.is(notOperator.code, 1);
    } finally {
      await na.c.endAsync(true);
      await nb.c.endAsync(true);
    }

    const del = await run(["vn", "delete", "blue", ...B]);
    assert.is(del.code, 0, del.err);
    assert.is(del.out.trim(), "VN 100 (blue) deleted");

    const table = await run(["vn", "list", ...B]);
    assert.is(table.code, 0, table.err);
    const lines = table.out.trim().split("\n");
    assert.match(lines[0], /^ID\s+ALIAS\s+NAME\s+VNI\s+ENCAP\s+MTU\s+SERVICE$/);
    assert.is(lines.length, 2);
    assert.match(lines[1], new RegExp(`^1\\s+red\\s+${red.name}\\s+4096\\s+vxlan\\s+9000\\s+l2$`));

    // An NVE may talk to the IMA (the broker lets it) but the IMA refuses catalog ops;
    // an identity without any IMA role is stopped by the broker's ACL.
    const notOp = await run(["vn", "list", "--as", "nve-a", ...B]);
    assert.is(notOp.code, 1);
    assert.is(notOp.err.trim(), `nvedge vn list: the IMA refused: not-authorized: nve-a is not an operator of IMA ima (its configuration's "operators") (field op)`);
    const stranger = await run(["vn", "list", "--as", "mallory", "--timeout", "800", ...B]);
    assert.is(stranger.code, 1);
    assert.match(stranger.err, /mallory is not an operator there/);

    for (const [args, msg] of [
      [["vn", "create", ...B], /missing --alias/],
      [["vn", "frob"], /unknown subcommand "frob"/],
      [["vn", "create", "--alias", "x", "--mtu", "5", ...B], /--mtu "5": not an integer 68..9000/],
      [["vn", "delete", ...B], /takes exactly one VN/],
      [["vn", "set-profile", "red", ...B], /needs --profile JSON or profile flags/],
      [["vn", "set-profile", "red", "--profile", "{x", ...B], /--profile: not valid JSON/],
      [["vn", "unfreeze", "red", ...B], /takes a VN and a MAC, got 1/],
      [["vn", "unfreeze", "red", "02:00:5e", ...B], /MAC "02:00:5e": not of the form/],
      [["vn", "frozen", "red", "blue", ...B], /takes at most one VN, got 2/],
    ] as [string[], RegExp][]) {
      const r = await run(args);
      assert.is(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, msg);
    }

    // Configuration errors name the file and the key; nothing starts.
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "operators: [operator]\nvns:\n  - alias: x\n    vnii: 3\n");
    const r1 = await run(["ima", "run", "--config", bad, "--store", join(dir, "s2"), ...B]);
    assert.is(r1.code, 2);
    assert.is(r1.err.trim(), `nvedge ima: ${bad}: vns.0: unknown key "vnii"`);
    const dupSeed = join(dir, "dup.json");
    writeFileSync(dupSeed, JSON.stringify({ vns: [{ alias: "x" }, { alias: "x", vni: 5 }] }));
    const r2 = await run(["ima", "run", "--config", dupSeed, "--store", join(dir, "s3"), ...B]);
    assert.is(r2.code, 2);
    assert.match(r2.err, /dup\.json: vns\[1\]: alias "x" is already VN 1's/);
    const zero = join(dir, "zero.json");
    writeFileSync(zero, JSON.stringify({ nves: [{ id: "nve-a", ip: "0.0.0.0" }] }));
    const r4 = await run(["ima", "run", "--config", zero, "--store", join(dir, "s4"), ...B]);
    assert.is(r4.code, 2);
    assert.is(r4.err.trim(), `nvedge ima: ${zero}: nves.0.ip: "0.0.0.0" is not a unicast IPv4 or IPv6 address (not 0.0.0.0, loopback, multicast or broadcast)`);
    const r3 = await run(["ima", "run", "--config", join(dir, "missing.json"), ...B]);
    assert.is(r3.code, 2);
    assert.match(r3.err, /missing\.json: cannot read: ENOENT/);

    child.kill("SIGINT");
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    assert.is(code, 0, log);
    ima = undefined;
  } finally {
    ima?.kill("SIGKILL");
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
