// host/pcap: the classic pcap codec behind `nvedge pcap` (INTERFACES.md).
// Round trips through our writer, byte orders, nanosecond files, tshark/editcap
// interop, and every malformed-file error naming the file and the offset.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { encodePcap, parsePcap, readPcap, writePcap, PcapError, GLOBAL_HEADER_LEN, RECORD_HEADER_LEN } from "../host/pcap/pcap.js";
import { encodePcapng, parsePcapng } from "../host/pcap/pcapng.js";

function frames(n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const f = new Uint8Array(60 + ((i * 37) % 1400));
    for (let j = 0; j < f.length; j++) f[j] = (i * 131 + j * 7) & 0xff;
    out.push(f);
  }
  return out;
}

function expectError(fn: () => unknown, file: string, offset: number, re: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, PcapError);
    const pe = e as PcapError;
    assert.is(pe.file, file);
    assert.is(pe.offset, offset, `offset in "${pe.message}"`);
    assert.match(pe.message, re);
    assert.ok(pe.message.startsWith(`${file}: offset ${offset}: `), pe.message);
    return;
  }
  assert.unreachable(`expected a PcapError matching ${re}`);
}

/** A hand-written big-endian file: the header and one 4-byte packet, byte by byte. */
const BIG_ENDIAN_FILE = Uint8Array.from([
  0xa1, 0xb2, 0xc3, 0xd4, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
  0x5f, 0x5e, 0x10, 0x00, 0x00, 0x01, 0xe2, 0x40, 0, 0, 0, 4, 0, 0, 0, 60, 0xde, 0xad, 0xbe, 0xef,
]);

test("round trip: frames, timestamps and lengths survive write then read", () => {
  const input = frames(50).map((frame, i) => ({ frame, tsSec: 1_700_000_000 + i, tsUsec: (i * 12345) % 1_000_000, origLen: frame.length }));
  const bytes = encodePcap(input);
  assert.is(bytes.length, GLOBAL_HEADER_LEN + input.reduce((s, p) => s + RECORD_HEADER_LEN + p.frame.length, 0));
  // Little-endian microsecond magic, version 2.4, link type 1.
  assert.equal([...bytes.subarray(0, 8)], [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
  assert.equal([...bytes.subarray(20, 24)], [1, 0, 0, 0]);
  const back = parsePcap(bytes);
  assert.is(back.linkType, 1);
  assert.is(back.bigEndian, false);
  assert.is(back.packets.length, 50);
  back.packets.forEach((p, i) => {
    assert.equal(p.frame, input[i].frame);
    assert.is(p.tsSec, input[i].tsSec);
    assert.is(p.tsUsec, input[i].tsUsec);
    assert.is(p.origLen, input[i].origLen);
  });
});

test("round trip through a file, and an empty capture", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pcap-"));
  try {
    const f = join(dir, "a.pcap");
    writePcap(f, frames(3));
    assert.equal(readPcap(f).packets.map((p) => p.frame), frames(3));
    writePcap(f, []);
    assert.is(readFileSync(f).length, GLOBAL_HEADER_LEN);
    assert.is(readPcap(f).packets.length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("big-endian files read the same as little-endian ones", () => {
  const p = parsePcap(BIG_ENDIAN_FILE, "be.pcap");
  assert.is(p.bigEndian, true);
  assert.is(p.snaplen, 65535);
  assert.is(p.packets.length, 1);
  assert.is(p.packets[0].tsSec, 0x5f5e1000);
  assert.is(p.packets[0].tsUsec, 123456);
  assert.is(p.packets[0].origLen, 60);
  assert.equal([...p.packets[0].frame], [0xde, 0xad, 0xbe, 0xef]);
  const be = encodePcap(frames(4), { bigEndian: true });
  assert.equal([...be.subarray(0, 4)], [0xa1, 0xb2, 0xc3, 0xd4]);
  assert.equal(parsePcap(be).packets.map((x) => x.frame), frames(4));
});

test("nanosecond files are read with microsecond timestamps", () => {
  const b = encodePcap([{ frame: new Uint8Array(60), tsSec: 5, tsUsec: 0, origLen: 60 }]);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0xa1b23c4d, true);
  dv.setUint32(GLOBAL_HEADER_LEN + 4, 987_654_321, true);
  const p = parsePcap(b);
  assert.is(p.nanosecond, true);
  assert.is(p.packets[0].tsUsec, 987_654);
});

test("snaplen truncates stored bytes and keeps the wire length", () => {
  const big = frames(1)[0];
  const full = new Uint8Array(1000).fill(7);
  const p = parsePcap(encodePcap([big, full], { snaplen: 100 }));
  assert.is(p.snaplen, 100);
  assert.is(p.packets[1].frame.length, 100);
  assert.is(p.packets[1].origLen, 1000);
});

test("errors: each malformed file names the file and the offset at fault", () => {
  const good = encodePcap(frames(2));
  expectError(() => parsePcap(good.subarray(0, 10), "x.pcap"), "x.pcap", 0, /truncated global header: 10 of 24/);
  expectError(() => parsePcap(new Uint8Array(24).fill(0x41), "x.pcap"), "x.pcap", 0, /bad magic 0x41414141/);
  const ng = new Uint8Array(28);
  new DataView(ng.buffer).setUint32(0, 0x0a0d0d0a, true);
  expectError(() => parsePcap(ng, "x.pcapng"), "x.pcapng", 8, /pcapng: bad byte-order magic/);
  const v = good.slice();
  v[4] = 3;
  expectError(() => parsePcap(v, "x.pcap"), "x.pcap", 4, /version 3\.4/);
  const lt = good.slice();
  lt[20] = 113; // LINKTYPE_LINUX_SLL
  expectError(() => parsePcap(lt, "sll.pcap"), "sll.pcap", 20, /link type 113 is not Ethernet/);
  // A record header cut short: 24 + 16 + 60 = 100 is the second record's offset.
  const first = GLOBAL_HEADER_LEN + RECORD_HEADER_LEN + frames(1)[0].length;
  expectError(() => parsePcap(good.subarray(0, first + 5), "t.pcap"), "t.pcap", first, /truncated record header of packet 2: 5 of 16/);
  // Packet data cut short.
  expectError(() => parsePcap(good.subarray(0, good.length - 1), "t.pcap"), "t.pcap", first + RECORD_HEADER_LEN,
    /truncated packet 2: \d+ of \d+ bytes/);
  // incl_len > orig_len.
  const il = good.slice();
  new DataView(il.buffer).setUint32(GLOBAL_HEADER_LEN + 12, 10, true);
  expectError(() => parsePcap(il, "l.pcap"), "l.pcap", GLOBAL_HEADER_LEN + 8, /captured length 60 exceeds original length 10/);
  // An absurd incl_len (corrupt file) is refused before any allocation.
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(GLOBAL_HEADER_LEN + 8, 0x7fffffff, true);
  new DataView(huge.buffer).setUint32(GLOBAL_HEADER_LEN + 12, 0x7fffffff, true);
  expectError(() => parsePcap(huge, "h.pcap"), "h.pcap", GLOBAL_HEADER_LEN + 8, /exceeds 262144/);
  const us = good.slice();
  new DataView(us.buffer).setUint32(GLOBAL_HEADER_LEN + 4, 1_000_000, true);
  expectError(() => parsePcap(us, "u.pcap"), "u.pcap", GLOBAL_HEADER_LEN + 4, /microseconds 1000000 out of range/);
  expectError(() => readPcap("/nonexistent/nvl-none.pcap"), "/nonexistent/nvl-none.pcap", 0, /cannot read: ENOENT/);
});

test("interop: tshark reads our file, and we read what editcap writes (both byte orders via tshark)", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pcap-"));
  try {
    const ours = join(dir, "ours.pcap");
    const fs = frames(5);
    writePcap(ours, fs.map((frame, i) => ({ frame, tsSec: 1_000_000 + i, tsUsec: 250_000, origLen: frame.length })));
    const r = spawnSync("tshark", ["-r", ours, "-T", "fields", "-e", "frame.len", "-e", "frame.time_epoch"], { encoding: "utf8" });
    assert.is(r.status, 0, r.stderr);
    const rows = r.stdout.trim().split("\n").map((l) => l.split("\t"));
    assert.equal(rows.map((x) => Number(x[0])), fs.map((f) => f.length));
    assert.equal(rows.map((x) => Number(x[1])), fs.map((_, i) => 1_000_000 + i + 0.25));
    // editcap re-encodes our capture as nanosecond pcap; we must read it back identically.
    const ns = join(dir, "ns.pcap");
    const e = spawnSync("editcap", ["-F", "nsecpcap", ours, ns], { encoding: "utf8" });
    assert.is(e.status, 0, e.stderr);
    const back = readPcap(ns);
    assert.is(back.nanosecond, true);
    assert.equal(back.packets.map((p) => p.frame), fs);
    assert.equal(back.packets.map((p) => p.tsUsec), fs.map(() => 250_000));
    // And a pcapng from editcap is read back identically (issue 13: nvedge pcap accepts pcapng).
    const ng = join(dir, "x.pcapng");
    assert.is(spawnSync("editcap", ["-F", "pcapng", ours, ng]).status, 0);
    const fromNg = readPcap(ng);
    assert.equal(fromNg.packets.map((p) => p.frame), fs);
    assert.equal(fromNg.packets.map((p) => [p.tsSec, p.tsUsec]), fs.map((_, i) => [1_000_000 + i, 250_000]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("pcapng (issue 13): our writer's interfaces, timestamps and comments read back by our reader and by tshark; malformed blocks named by offset", () => {
  const fs = frames(3);
  const out = encodePcapng(fs.map((frame, i) => ({ frame, iface: i === 1 ? "eth3" : "eth2", tsSec: 1_700_000_000 + i, tsUsec: 123_456, origLen: frame.length,
    ...(i !== 2 ? { comment: i === 0 ? "untagged" : "unknown-vid" } : {}) })));
  const back = parsePcapng(out, "ours.pcapng");
  assert.equal(back.packets.map((p) => p.frame), fs);
  assert.equal(back.packets.map((p) => [p.iface, p.comment, p.tsSec, p.tsUsec]),
    [["eth2", "untagged", 1_700_000_000, 123_456], ["eth3", "unknown-vid", 1_700_000_001, 123_456], ["eth2", undefined, 1_700_000_002, 123_456]]);
  assert.equal(parsePcap(out).packets.map((p) => p.frame), fs, "parsePcap takes pcapng too");
  const dir = mkdtempSync(join(tmpdir(), "nvl-pcapng-"));
  try {
    const f = join(dir, "ours.pcapng");
    writeFileSync(f, out);
    const r = spawnSync("tshark", ["-r", f, "-T", "fields", "-e", "frame.interface_name", "-e", "frame.comment", "-e", "frame.time_epoch"], { encoding: "utf8" });
    if (r.status === null || r.error) return;
    assert.is(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").map((l) => l.split("\t")),
      [["eth2", "untagged", "1700000000.123456000"], ["eth3", "unknown-vid", "1700000001.123456000"], ["eth2", "", "1700000002.123456000"]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // Malformed: each names the file and the offset at fault, and nothing is returned.
  expectError(() => parsePcapng(out.subarray(0, out.length - 2), "t.pcapng"), "t.pcapng", lastBlock(out), /pcapng: truncated block: \d+ of \d+ bytes/);
  const trail = out.slice();
  new DataView(trail.buffer).setUint32(out.length - 4, 12, true);
  expectError(() => parsePcapng(trail, "t.pcapng"), "t.pcapng", out.length - 4, /trailing length differs/);
  const badIf = out.slice();
  new DataView(badIf.buffer).setUint32(lastBlock(out) + 8, 7, true);
  expectError(() => parsePcapng(badIf, "t.pcapng"), "t.pcapng", lastBlock(out) + 8, /packet 3: unknown interface 7/);
});

/** Offset of the last block of a pcapng file (its trailing length says how long it is). */
function lastBlock(b: Uint8Array): number {
  return b.length - new DataView(b.buffer, b.byteOffset).getUint32(b.length - 4, true);
}

test.run();
