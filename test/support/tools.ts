// Strict by default (issue 17): a test that needs a tool or root asks here
// first. As root, or whenever CI is set, a missing one is recorded as missing
// and the runner (scripts/test.mjs) fails the run naming it. The only way to go
// without it is to say so: NVEDGE_TEST_SKIP=tool,... (printed on the summary
// line). Outside CI and not as root (a developer's laptop) a missing tool is a
// skip, also printed. Either way, the file's skip is on record, so a file that
// registers no tests because of it is not mistaken for a vanished suite.
import { spawnSync } from "node:child_process";
import { registry } from "./test-registry.js";

export function isStrict(): boolean {
  return process.getuid?.() === 0 || !!process.env.CI;
}

/** The names in NVEDGE_TEST_SKIP (comma separated). */
export function allowedSkips(): Set<string> {
  return new Set((process.env.NVEDGE_TEST_SKIP ?? "").split(",").map((s) => s.trim()).filter(Boolean));
}

/** Whether a command is on PATH. */
export function onPath(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v "$0"`, cmd], { stdio: "ignore" }).status === 0;
}

/**
 * True when `tool` is there (`available`), so the tests that need it are to be
 * registered. Otherwise false, and the absence is recorded: a skip when
 * NVEDGE_TEST_SKIP names the tool (or outside root and CI), else a missing tool
 * that fails the run. `tests` says what goes untested (for the summary).
 */
export function requireTool(tool: string, available: boolean | (() => boolean), tests: string): boolean {
  const ok = typeof available === "function" ? available() : available;
  if (ok) return true;
  const reg = registry();
  const file = reg.file || "(unknown file)";
  // one record per file and tool (a fixture list may be asked for more than once)
  if ([...reg.skips, ...reg.missing].some((r) => r.file === file && r.tool === tool)) return false;
  if (allowedSkips().has(tool) || !isStrict()) {
    reg.skips.push({ file, tool, tests });
    process.stdout.write(`  SKIPPED ${file}: ${tests} (no ${tool}${allowedSkips().has(tool) ? ", NVEDGE_TEST_SKIP" : ", not root and no CI"})\n`);
  } else {
    reg.missing.push({ file, tool, why: tests });
  }
  return false;
}

/** requireTool for root (network namespaces, CAP_NET_RAW, OVS). */
export function requireRoot(tests: string): boolean {
  return requireTool("root", process.getuid?.() === 0, tests);
}

/** The tool name (for NVEDGE_TEST_SKIP) of a command: Open vSwitch's commands are all "ovs". */
const TOOL_OF: Record<string, string> = { "ovs-vswitchd": "ovs", "ovsdb-server": "ovs", "ovs-vsctl": "ovs", "ovs-ofctl": "ovs" };

/** requireRoot, then requireTool for each command of `cmds` on PATH (named by its tool, e.g. "ovs"). */
export function requireRootAnd(cmds: string[], tests: string): boolean {
  if (!requireRoot(tests)) return false;
  const miss = cmds.find((c) => !onPath(c));
  return miss === undefined || requireTool(TOOL_OF[miss] ?? miss, false, `${tests} (needs ${miss})`);
}

/**
 * For a kernel feature this machine refuses outright (not a missing package a
 * pre-step could install): false and a skip on record, printed with the
 * kernel's own answer, when `refusal` is a string; true when it is undefined.
 * Strict or not, for nothing can be installed to have it; the summary line
 * names it (SKIPPED: <feature>), so a green run says what it did not test.
 */
export function kernelAllows(feature: string, refusal: string | undefined, tests: string): boolean {
  if (refusal === undefined) return true;
  const reg = registry();
  const file = reg.file || "(unknown file)";
  if (reg.skips.some((r) => r.file === file && r.tool === feature)) return false;
  reg.skips.push({ file, tool: feature, tests, kernel: true });
  process.stdout.write(`  SKIPPED ${file}: ${tests} (this kernel refuses ${feature}: ${refusal})\n`);
  return false;
}
