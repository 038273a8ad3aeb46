// The pure parts of the brokers: topic matching (MQTT 3.1.1 §4.7), the
// subscription-within-grant test, the role grants of PROTOCOL.md §1/§6, the
// generated Mosquitto acl_file and the password-file reader checked against
// files written by the real mosquitto_passwd.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { topicMatches, FilterIndex, filterWithin, grantsFor, canPublish, canSubscribe, canRead, isTopicFilter, isValidIdentity, AclError, publishRefusal, clientIdAllowed, hypervisorsOf, MAX_STATUS_BYTES } from "../host/broker/acl.js";
import { mosquittoAclFile } from "../host/cli/mosquitto-acl.js";
import { parsePasswordFile, loadPasswordFile, verifyPassword, PasswordFileError } from "../host/broker/passwd.js";

const here = dirname(fileURLToPath(import.meta.url)); // dist/test

test("topicMatches follows MQTT 3.1.1 §4.7 (+, #, parent level, $-topics)", () => {
  const yes: [string, string][] = [
    ["a/b", "a/b"], ["a/+", "a/b"], ["a/#", "a"], ["a/#", "a/b/c"], ["#", "a"], ["+/+", "a/b"], ["a/+/c", "a//c"],
  ];
  const no: [string, string][] = [
    ["a/b", "a/c"], ["a/+", "a/b/c"], ["a/+", "a"], ["a/b/#", "a"], ["#", "$SYS/x"], ["+/x", "$nvedge/x"], ["a", "a/b"],
  ];
  for (const [f, t] of yes) assert.ok(topicMatches(f, t), `${f} should match ${t}`);
  for (const [f, t] of no) assert.not.ok(topicMatches(f, t), `${f} should not match ${t}`);
});

test("FilterIndex (the compiled ACL) matches exactly the filters topicMatches does, each once and in order", () => {
  const filters = ["a/b", "a/+", "a/#", "#", "+/+", "a/+/c", "a/b/#", "+/x", "+", "a", "a/b", "$SYS/#", "a//c", "+/#", "nvo3/v1/nve/+/status"];
  const topics = ["a", "a/b", "a/c", "a/b/c", "a//c", "a/", "/a", "$SYS/x", "$nvedge/x", "x/x", "b", "nvo3/v1/nve/n1/status", "nvo3/v1/nve/n1/status/h"];
  const ix = new FilterIndex(filters);
  for (const t of topics) {
    const want = filters.flatMap((f, i) => (topicMatches(f, t) ? [i] : []));
    assert.equal(ix.match(t), want, t);
    assert.is(ix.any(t), want.length > 0, t);
  }
  assert.equal(new FilterIndex([]).match("a"), []);
});

test("filterWithin: a filter is allowed only if everything it matches is granted", () => {
  const within: [string, string][] = [
    ["nvo3/v1/hv/hv-1/#", "nvo3/v1/hv/hv-1/#"], ["nvo3/v1/hv/hv-1/rsp", "nvo3/v1/hv/hv-1/#"],
    ["nvo3/v1/hv/hv-1", "nvo3/v1/hv/hv-1/#"], ["nvo3/v1/hv/hv-1/+", "nvo3/v1/hv/hv-1/#"],
    ["nvo3/v1/nve/x/status", "nvo3/v1/nve/+/status"], ["nvo3/v1/nve/+/status", "nvo3/v1/nve/+/status"],
    ["a/+/#", "a/#"],
  ];
  const beyond: [string, string][] = [
    ["nvo3/v1/hv/+/rsp", "nvo3/v1/hv/hv-1/#"], ["nvo3/v1/hv/#", "nvo3/v1/hv/hv-1/#"], ["#", "nvo3/v1/hv/hv-1/#"],
    ["nvo3/v1/nve/+/#", "nvo3/v1/nve/+/status"], ["nvo3/v1/nve/+/status/#", "nvo3/v1/nve/+/status"],
    ["nvo3/v1/nve/x/status/hv-1", "nvo3/v1/nve/+/status"], ["a/#", "a/+"], ["a/+", "a/b"], ["a", "a/+"],
  ];
  for (const [f, g] of within) assert.ok(filterWithin(f, g), `${f} is within ${g}`);
  for (const [f, g] of beyond) assert.not.ok(filterWithin(f, g), `${f} reaches beyond ${g}`);
  // cross-check against topicMatches on sample topics: within ⇒ every sample f matches, g matches too
  const samples = ["a", "a/b", "a/c", "a/b/c", "a//c", "nvo3/v1/hv/hv-1", "nvo3/v1/hv/hv-1/rsp", "nvo3/v1/hv/hv-2/rsp",
    "nvo3/v1/nve/x/status", "nvo3/v1/nve/x/status/hv-1", "nvo3/v1/nve/x/req/hv-1"];
  for (const [f, g] of within) for (const t of samples) if (topicMatches(f, t)) assert.ok(topicMatches(g, t), `${t}: ${f} within ${g}`);
  for (const [f, g] of beyond) assert.ok(samples.some((t) => topicMatches(f, t) && !topicMatches(g, t)), `a sample shows ${f} reaching beyond ${g}`);
});

test("topic filter syntax [MQTT-4.7.1-2/3] and identities (PROTOCOL.md §1)", () => {
  for (const f of ["a/#", "+", "a/+/b", "#"]) assert.ok(isTopicFilter(f), f);
  for (const f of ["", "a/#/b", "a#", "a/b+", "a/+b"]) assert.not.ok(isTopicFilter(f), f);
  for (const id of ["hv-1", "nve.a", "A_b-9", "x".repeat(64)]) assert.ok(isValidIdentity(id), id);
  for (const id of ["", "x".repeat(65), "a/b", "a+", "#", "é", "a b"]) assert.not.ok(isValidIdentity(id), id);
  assert.throws(() => grantsFor("a/b", {}), (e: unknown) => e instanceof AclError && /a\/b/.test((e as Error).message));
});

test("agent grants: own req/status topics only, own tree and NVE status only (PROTOCOL.md §1)", () => {
  const g = grantsFor("hv-1", { nves: ["nve-a"] });
  assert.ok(canPublish(g, "nvo3/v1/nve/nve-a/req/hv-1"));
  assert.ok(canPublish(g, "nvo3/v1/nve/nve-a/status/hv-1"));
  // issue 10: only under configured NVE names (no retained state under invented ones)
  assert.not.ok(canPublish(g, "nvo3/v1/nve/nve-b/status/hv-1"), "an NVE that is not configured");
  assert.not.ok(canPublish(g, "nvo3/v1/nve/nve-zz/req/hv-1"));
  assert.not.ok(canPublish(grantsFor("hv-1", {}), "nvo3/v1/nve/nve-a/req/hv-1"), "no NVE configured: nothing to write to");
  assert.not.ok(canPublish(g, "nvo3/v1/nve/nve-a/req/hv-2"), "another hv's request topic");
  assert.not.ok(canPublish(g, "nvo3/v1/nve/nve-a/status"), "the NVE's status");
  assert.not.ok(canPublish(g, "nvo3/v1/hv/hv-1/rsp"), "its own rsp (only NVEs answer)");
  assert.not.ok(canPublish(g, "nvo3/v1/ima/req/hv-1"), "not an IMA client");
  assert.ok(canSubscribe(g, "nvo3/v1/hv/hv-1/#"));
  assert.ok(canSubscribe(g, "nvo3/v1/nve/+/status"));
  assert.not.ok(canSubscribe(g, "nvo3/v1/hv/hv-2/rsp"));
  assert.not.ok(canSubscribe(g, "nvo3/v1/hv/+/rsp"), "a wildcard reaching other hvs");
  assert.not.ok(canSubscribe(g, "nvo3/v1/nve/+/status/+"), "other agents' status");
  assert.not.ok(canRead(g, "nvo3/v1/nve/nve-a/req/hv-1"), "its own requests are for the NVE");
});

test("NVE, IMA and operator grants (PROTOCOL.md §1, §6)", () => {
  const roles = { nves: ["nve-a"], imas: ["ima"], operators: ["alice"] };
  const nve = grantsFor("nve-a", roles);
  assert.ok(canSubscribe(nve, "nvo3/v1/nve/nve-a/#"));
  assert.not.ok(canSubscribe(nve, "nvo3/v1/nve/nve-b/#"));
  assert.ok(canPublish(nve, "nvo3/v1/hv/hv-9/rsp") && canPublish(nve, "nvo3/v1/hv/hv-9/evt"), "its hypervisors unknown: any");
  // issue 10: with its ports' hypervisors known, only those
  const own = grantsFor("nve-a", { ...roles, hypervisors: { "nve-a": ["hv-1", "hv-2"] } });
  for (const t of ["nvo3/v1/hv/hv-1/rsp", "nvo3/v1/hv/hv-2/evt"]) assert.ok(canPublish(own, t), t);
  for (const t of ["nvo3/v1/hv/hv-9/rsp", "nvo3/v1/hv/hv-9/evt", "nvo3/v1/hv/+/rsp"]) assert.not.ok(canPublish(own, t), t);
  assert.ok(canPublish(nve, "nvo3/v1/nve/nve-a/status"));
  assert.not.ok(canPublish(nve, "nvo3/v1/nve/nve-b/status"));
  assert.ok(canPublish(nve, "nvo3/v1/ima/req/nve-a"));
  assert.not.ok(canPublish(nve, "nvo3/v1/ima/req/nve-b"));
  assert.not.ok(canPublish(nve, "nvo3/v1/ima/bind/100/02:00:5e:00:00:01"), "only the IMA writes bindings");
  for (const f of ["nvo3/v1/ima/rsp/nve-a", "nvo3/v1/ima/vn/#", "nvo3/v1/ima/vtep/#", "nvo3/v1/ima/bind/#"]) assert.ok(canSubscribe(nve, f), f);
  assert.not.ok(canSubscribe(nve, "nvo3/v1/ima/rsp/+"));
  const ima = grantsFor("ima", roles);
  for (const t of ["nvo3/v1/ima/vn/100", "nvo3/v1/ima/vtep/100/nve-a", "nvo3/v1/ima/bind/100/x", "nvo3/v1/ima/rsp/nve-a"]) assert.ok(canPublish(ima, t), t);
  assert.not.ok(canPublish(ima, "nvo3/v1/ima/req/nve-a"), "another's request topic");
  assert.ok(canSubscribe(ima, "nvo3/v1/ima/req/+") && canSubscribe(ima, "nvo3/v1/nve/+/status"));
  assert.not.ok(canSubscribe(ima, "nvo3/v1/nve/+/req/+"));
  const op = grantsFor("alice", roles);
  assert.ok(canPublish(op, "nvo3/v1/ima/req/alice"));
  assert.not.ok(canPublish(op, "nvo3/v1/ima/vn/100"));
  assert.ok(canSubscribe(op, "nvo3/v1/ima/rsp/alice") && canSubscribe(op, "nvo3/v1/ima/vn/#"));
  assert.not.ok(canSubscribe(op, "nvo3/v1/ima/bind/#"));
  // an identity not listed anywhere is just an agent
  assert.not.ok(canPublish(grantsFor("nve-b", roles), "nvo3/v1/hv/hv-1/rsp"));
  // the IMA identity defaults to "ima"
  assert.ok(canPublish(grantsFor("ima", {}), "nvo3/v1/ima/vn/1"));
  assert.not.ok(canPublish(grantsFor("ima", { imas: ["mapper"] }), "nvo3/v1/ima/vn/1"));
});

test("publishRefusal: retained messages only on the protocol's retained topics, an agent's status small (issue 10)", () => {
  const hv = grantsFor("hv-1", { nves: ["nve-a"] });
  assert.is(publishRefusal(hv, "nvo3/v1/nve/nve-a/status/hv-1", true, 18), null);
  assert.is(publishRefusal(hv, "nvo3/v1/nve/nve-a/status/hv-1", true, MAX_STATUS_BYTES), null);
  assert.match(String(publishRefusal(hv, "nvo3/v1/nve/nve-a/status/hv-1", true, MAX_STATUS_BYTES + 1)), /exceeds the 1024 allowed/);
  assert.is(publishRefusal(hv, "nvo3/v1/nve/nve-a/req/hv-1", false, 200_000), null, "a request is bounded by maxPayload elsewhere");
  assert.match(String(publishRefusal(hv, "nvo3/v1/nve/nve-a/req/hv-1", true, 10)), /retained messages are not accepted/);
  assert.match(String(publishRefusal(hv, "nvo3/v1/nve/nve-b/status/hv-1", true, 10)), /no write grant/);
  const roles = { nves: ["nve-a"], imas: ["ima"] };
  assert.is(publishRefusal(grantsFor("nve-a", roles), "nvo3/v1/nve/nve-a/status", true, 80), null);
  assert.match(String(publishRefusal(grantsFor("nve-a", roles), "nvo3/v1/hv/hv-1/rsp", true, 80)), /retained/);
  assert.is(publishRefusal(grantsFor("ima", roles), "nvo3/v1/ima/bind/1/02:00:5e:00:00:01", true, 80), null);
  assert.match(String(publishRefusal(grantsFor("ima", roles), "nvo3/v1/ima/rsp/nve-a", true, 80)), /retained/);
});

test("clientIdAllowed: the identity or `{identity}-…` (issue 10)", () => {
  for (const id of ["hv-1", "hv-1-", "hv-1-agent-0a1b", "hv-1-x-y"]) assert.ok(clientIdAllowed("hv-1", id), id);
  for (const id of ["", "hv-10", "hv-1x", "xhv-1", "nvedge-ima-ima", "hv-2-hv-1", `hv-1-${"x".repeat(130)}`]) assert.not.ok(clientIdAllowed("hv-1", id), id);
});

test("hypervisorsOf: the ids of every port's hypervisors, plain or { id, vns }", () => {
  assert.equal(hypervisorsOf({ ports: [{ hypervisors: ["hv-1", { id: "hv-2", vns: [1] }] }, { hypervisors: ["hv-1", "hv-3"] }, {}] }), ["hv-1", "hv-2", "hv-3"]);
});

test("mosquittoAclFile: agent rules as %u patterns, one user block per listed identity", () => {
  const acl = mosquittoAclFile({ nves: ["nve-a"], imas: ["ima"], operators: ["alice", "nve-a"] });
  const lines = acl.split("\n");
  assert.ok(lines.includes("pattern write nvo3/v1/nve/nve-a/req/%u"));
  assert.ok(lines.includes("pattern write nvo3/v1/nve/nve-a/status/%u"));
  assert.not.ok(lines.some((l) => l.includes("nve/+/req") || l.includes("nve/+/status/")), "no wildcard NVE name for agents");
  assert.ok(lines.includes("# nve-a: its configuration was not given (--nve-config): it may answer any hypervisor"));
  assert.ok(lines.includes("pattern read nvo3/v1/hv/%u/#"));
  // Mosquitto reads `topic` lines before any `user` line as rules for anonymous clients: there must be none
  const firstUser = lines.findIndex((l) => l.startsWith("user "));
  assert.not.ok(lines.slice(0, firstUser).some((l) => l.startsWith("topic ")));
  assert.is(lines.filter((l) => l === "user nve-a").length, 1, "one block for an identity with two roles");
  const block = (u: string) => { const i = lines.indexOf(`user ${u}`); const j = lines.findIndex((l, k) => k > i && l.startsWith("user ")); return lines.slice(i, j < 0 ? undefined : j); };
  assert.ok(block("nve-a").includes("topic read nvo3/v1/nve/nve-a/#"));
  assert.ok(block("nve-a").includes("topic write nvo3/v1/ima/req/nve-a"));
  assert.is(block("nve-a").filter((l) => l === "topic write nvo3/v1/ima/req/nve-a").length, 1, "no duplicate lines");
  assert.ok(block("alice").includes("topic read nvo3/v1/ima/rsp/alice"));
  assert.not.ok(acl.includes("%u") && /topic .*%u/.test(acl), "no %u in topic lines (Mosquitto does not substitute there)");
  assert.throws(() => mosquittoAclFile({ nves: ["bad name"] }), /nves: identity "bad name"/);
  const hv = mosquittoAclFile({ nves: ["nve-a"], hypervisors: { "nve-a": ["hv-1", "hv-2"] } }).split("\n");
  const rspEvt = hv.filter((l) => /^topic write nvo3\/v1\/hv\//.test(l));
  assert.equal(rspEvt, ["topic write nvo3/v1/hv/hv-1/rsp", "topic write nvo3/v1/hv/hv-2/rsp", "topic write nvo3/v1/hv/hv-1/evt", "topic write nvo3/v1/hv/hv-2/evt"]);
  assert.throws(() => mosquittoAclFile({ nves: ["nve-a"], hypervisors: { "nve-a": ["a b"] } }), /hypervisors of nve-a: identity "a b"/);
});

test("mosquitto-acl CLI prints the same file; a bad identity exits 2 with one clear line", () => {
  const cli = join(here, "..", "host", "cli", "mosquitto-acl.js");
  const ok = spawnSync(process.execPath, [cli, "--nve", "nve-a", "--nve", "nve-b", "--operator", "alice"], { encoding: "utf8", timeout: 10_000 });
  assert.is(ok.status, 0, ok.stderr);
  assert.is(ok.stdout, mosquittoAclFile({ nves: ["nve-a", "nve-b"], imas: ["ima"], operators: ["alice"] }));
  const bad = spawnSync(process.execPath, [cli, "--nve", "a/b"], { encoding: "utf8", timeout: 10_000 });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /nves: identity "a\/b" does not match/);
  assert.is(bad.stdout, "");
  const unknown = spawnSync(process.execPath, [cli, "--bogus"], { encoding: "utf8", timeout: 10_000 });
  assert.is(unknown.status, 2);
  // --nve-config: the NVE's name and its ports' hypervisors from its configuration file
  const dir = mkdtempSync(join(tmpdir(), "nvl-acl-"));
  try {
    const cfg = join(dir, "nve-a.json");
    writeFileSync(cfg, JSON.stringify({ nve: "nve-a", underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01" },
      ports: [{ name: "eth2", hypervisors: ["hv-1", "hv-2"] }, { name: "eth3", hypervisors: ["hv-3"] }] }));
    const gen = spawnSync(process.execPath, [cli, "--nve-config", cfg, "--operator", "alice"], { encoding: "utf8", timeout: 10_000 });
    assert.is(gen.status, 0, gen.stderr);
    assert.is(gen.stdout, mosquittoAclFile({ nves: ["nve-a"], hypervisors: { "nve-a": ["hv-1", "hv-2", "hv-3"] }, imas: ["ima"], operators: ["alice"] }));
    const missing = spawnSync(process.execPath, [cli, "--nve-config", join(dir, "none.json")], { encoding: "utf8", timeout: 10_000 });
    assert.is(missing.status, 2);
    assert.match(missing.stderr, /--nve-config: .*none\.json: cannot read/);
    const twice = spawnSync(process.execPath, [cli, "--nve-config", cfg, "--nve", "nve-a"], { encoding: "utf8", timeout: 10_000 });
    assert.is(twice.status, 2);
    assert.match(twice.stderr, /NVE nve-a is given twice/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("password files written by mosquitto_passwd ($7$ PBKDF2-SHA512 and $6$ SHA-512) verify", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-passwd-"));
  try {
    const f = join(dir, "passwd");
    execFileSync("mosquitto_passwd", ["-c", "-b", f, "hv-1", "s3cret"]);
    execFileSync("mosquitto_passwd", ["-H", "sha512", "-b", f, "hv-2", "other pw"]);
    execFileSync("mosquitto_passwd", ["-b", f, "nve-a", "ünïcode"]);
    const text = readFileSync(f, "utf8");
    assert.match(text, /^hv-1:\$7\$101\$/m);
    assert.match(text, /^hv-2:\$6\$/m);
    const users = loadPasswordFile(f);
    assert.equal([...users.keys()].sort(), ["hv-1", "hv-2", "nve-a"]);
    assert.is(await verifyPassword(users, "hv-1", Buffer.from("s3cret")), "ok");
    assert.is(await verifyPassword(users, "hv-1", Buffer.from("s3cret ")), "bad-password");
    assert.is(await verifyPassword(users, "hv-2", Buffer.from("other pw")), "ok");
    assert.is(await verifyPassword(users, "hv-2", Buffer.from("s3cret")), "bad-password");
    assert.is(await verifyPassword(users, "nve-a", Buffer.from("ünïcode")), "ok");
    assert.is(await verifyPassword(users, "hv-3", Buffer.from("s3cret")), "unknown-user");
    assert.is(await verifyPassword(users, "hv-1", undefined), "no-password");
    assert.is(await verifyPassword(users, "hv-1", Buffer.alloc(0)), "bad-password");
    // deleting a user with the real tool removes it here too
    execFileSync("mosquitto_passwd", ["-D", f, "hv-2"]);
    assert.not.ok(loadPasswordFile(f).has("hv-2"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("password file errors name the file and line, and plain-text passwords are refused", () => {
  const bad: [string, RegExp][] = [
    ["hv-1:plaintext\n", /pw:1: user hv-1: unsupported hash/],
    ["# comment\n\nnocolon\n", /pw:3: expected user:hash/],
    ["hv-1:$7$x$c2FsdA==$aGFzaA==\n", /pw:1: user hv-1: bad iteration count "x"/],
    ["hv-1:$7$101$c2FsdA==$aGFzaA==\n", /pw:1: user hv-1: hash is 4 bytes, expected 64/],
    ["hv-1:$6$!!$aGFzaA==\n", /pw:1: user hv-1: salt or hash is not base64/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parsePasswordFile(text, "pw"), (e: unknown) => e instanceof PasswordFileError && re.test((e as Error).message), text);
  }
  const line = `hv-1:$6$c2FsdA==$${Buffer.alloc(64).toString("base64")}`;
  assert.throws(() => parsePasswordFile(`${line}\n${line}\n`, "pw"), /pw:2: user hv-1 appears twice/);
  assert.throws(() => loadPasswordFile("/nonexistent/nvl-passwd"), /\/nonexistent\/nvl-passwd: cannot read the password file \(ENOENT\)/);
  const dir = mkdtempSync(join(tmpdir(), "nvl-passwd-"));
  try {
    writeFileSync(join(dir, "p"), "# only comments\r\n\r\n");
    assert.is(loadPasswordFile(join(dir, "p")).size, 0, "CRLF and comments");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
