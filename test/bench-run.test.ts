// bench/run.ts: the control bench's process (its agents) started again
// under an 8 MiB young generation (semi-space) unless told otherwise (bench/README.md
// "read15": shorter scavenges in the agents, which hold the paced answers).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { parseArgs, semiSpaceArgs } from "../bench/run.js";

const s = suite("bench/run: the agents' young generation");

s("--only control starts again with --max-semi-space-size=8, keeping node's own flags; another size when asked", () => {
  assert.equal(semiSpaceArgs(parseArgs(["--only", "control"]), ["--enable-source-maps"], {}), ["--enable-source-maps", "--max-semi-space-size=8"]);
  assert.equal(semiSpaceArgs(parseArgs(["--only=control"]), [], { NVEDGE_BENCH_AGENT_SEMI_SPACE: "4" }), ["--max-semi-space-size=4"]);
});

s("not again: another module or all of them, the size already given (flags or NODE_OPTIONS), or 0", () => {
  assert.is(semiSpaceArgs(parseArgs([]), [], {}), undefined);
  assert.is(semiSpaceArgs(parseArgs(["--only", "store"]), [], {}), undefined);
  assert.is(semiSpaceArgs(parseArgs(["--only", "control"]), ["--max-semi-space-size=2"], {}), undefined);
  assert.is(semiSpaceArgs(parseArgs(["--only", "control"]), [], { NODE_OPTIONS: "--max-semi-space-size=16" }), undefined);
  assert.is(semiSpaceArgs(parseArgs(["--only", "control"]), [], { NVEDGE_BENCH_AGENT_SEMI_SPACE: "0" }), undefined);
});

s("a size that is not a number of MiB is refused", () => {
  assert.throws(() => semiSpaceArgs(parseArgs(["--only", "control"]), [], { NVEDGE_BENCH_AGENT_SEMI_SPACE: "4M" }), /NVEDGE_BENCH_AGENT_SEMI_SPACE=4M: a size in MiB/);
});

s.run();
