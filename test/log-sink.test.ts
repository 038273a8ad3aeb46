// The logger's stderr (host/log/sink.ts): a reader that stops taking lines
// must not stop the process that logs. A child process logs 30,000 lines
// into a pipe nobody reads: it must go on (say "done" on stdout) instead of
// blocking in write(2); once the pipe is read again, what it wrote must be
// whole lines in order, a gap, and one line saying how many were dropped,
// exactly the gap's size. Both for a pipe (`nvedge run 2>&1 | tee`) and a
// stream socket (the journal's, node's own spawn's).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawn } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LogSink } from "../host/log/sink.js";

const loggerUrl = new URL("../host/log/logger.js", import.meta.url).href;

const child = `
const { Logger } = await import(${JSON.stringify(loggerUrl)});
const logger = new Logger({ service: "nve", id: "t", format: "text" });
const N = 30000;
for (let i = 0; i < N; i++) {
  logger.line("line " + String(i).padStart(6, "0") + " " + "x".repeat(80), "io", "info");
  if (i % 100 === 99) await new Promise((r) => setImmediate(r));
}
process.stdout.write(JSON.stringify({ done: N }) + "\\n");
// stays until the parent reads the pipe again and the sink has written its rest
await new Promise((r) => setTimeout(r, 1500));
`;

/**
 * Runs the child with its stderr on `kind`: "pipe" (a FIFO, as `nvedge run
 * 2>&1 | tee` gives it) or "socket" (a stream socket, as the journal and
 * node's own spawn give it); reads nothing from it until the child says it
 * is done, then all of it.
 */
async function stalled(kind: "pipe" | "socket") {
  const dir = mkdtempSync(join(tmpdir(), "nvl-log-"));
  try {
    const file = join(dir, "child.mjs");
    writeFileSync(file, child);
    let readEnd: number | undefined, writeEnd: number | undefined;
    if (kind === "pipe") {
      const fifo = join(dir, "fifo");
      execFileSync("mkfifo", [fifo]);
      readEnd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      writeEnd = openSync(fifo, constants.O_WRONLY);
    }
    const c = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", writeEnd ?? "pipe"] });
    if (writeEnd !== undefined) closeSync(writeEnd);
    let out = "";
    c.stdout!.setEncoding("utf8");
    const exited = new Promise<void>((r) => c.on("close", () => r()));
    const done = new Promise<string>((resolve, reject) => {
      c.stdout!.on("data", (d) => { out += d; if (out.includes("\n")) resolve(out); });
      c.on("exit", (code) => reject(new Error(`the child exited (${code}) before it was done`)));
    });
    // nobody reads its stderr meanwhile: a blocking write would never let it say "done"
    const said = await Promise.race([done, new Promise<undefined>((r) => setTimeout(r, 20_000))]);
    if (!said) {
      c.kill("SIGKILL");
      assert.unreachable(`the child blocked on its stalled stderr (${kind}) for 20 s`);
    }
    // now read it all
    let err = "";
    if (readEnd !== undefined) {
      const buf = Buffer.alloc(1 << 16);
      let closed = false;
      void exited.then(() => { closed = true; });
      for (let quiet = 0; ; ) {
        let n = 0;
        try { n = readSync(readEnd, buf); } catch (e) { if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e; n = -1; }
        if (n > 0) { err += buf.toString("utf8", 0, n); quiet = 0; continue; }
        if (n === 0 && closed) break; // every writer gone: the end
        if (++quiet > 1000) assert.unreachable("the pipe never ended (10 s)");
        await new Promise((r) => setTimeout(r, 10));
      }
      closeSync(readEnd);
    } else {
      c.stderr!.setEncoding("utf8").on("data", (d) => { err += d; });
      await exited;
    }
    return { info: JSON.parse(said!) as { done: number }, err };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const kind of ["pipe", "socket"] as const) {
  test(`a stalled stderr reader (${kind}): the process goes on, the log keeps whole lines in order and says how many it dropped`, async () => {
    const { info, err } = await stalled(kind);
    const lines = err.split("\n").filter(Boolean);
    const seen: number[] = [];
    let dropped = -1;
    for (const l of lines) {
      const m = / INFO  t io: line (\d{6}) x{80}$/.exec(l);
      if (m) { seen.push(Number(m[1])); continue; }
      const d = / WARN  t log: (\d+) lines dropped: stderr's reader took nothing for \d+ ms$/.exec(l);
      assert.ok(d, `a line neither whole nor the drop count: ${JSON.stringify(l.slice(0, 200))}`);
      assert.is(dropped, -1, "one drop count");
      dropped = Number(d![1]);
    }
    assert.ok(dropped > 0, `some lines dropped (${seen.length} of ${info.done} arrived)`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `in order: ${seen[i - 1]} then ${seen[i]}`);
    assert.is(seen.length + dropped, info.done, `${seen.length} arrived + ${dropped} dropped = every line`);
    assert.is(seen[0], 0, "the first lines arrived");
  });
}

test("a regular file: written as before, blocking, every line", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-log-"));
  try {
    const path = join(dir, "log");
    writeFileSync(path, "");
    const fd = openSync(path, "a");
    const s = new LogSink({ fd });
    assert.is(s.nonBlocking, false);
    for (let i = 0; i < 1000; i++) s.write(`line ${i}\n`);
    s.close();
    const got = readFileSync(path, "utf8").split("\n").filter(Boolean);
    assert.is(got.length, 1000);
    assert.is(got[999], "line 999");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
