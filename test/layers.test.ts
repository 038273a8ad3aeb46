// The layers of host/ and assembly/ (issue 16; README "Layers"): every import,
// type-only and dynamic ones included, points down a layer or stays in its own
// folder. An import sideways (two folders of one layer) or up fails, as does a
// folder or root file no layer names (give it one here and in the README).
// The imports are read by TypeScript's own scanner (ts.preProcessFile).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", ".."); // dist/test -> repo root

/**
 * Bottom first. A unit is a folder under the root, or a file at the root;
 * "*.ts" is every file at the root that no other entry names.
 */
const HOST_LAYERS: string[][] = [
  ["*.ts", "domain", "sys", "pcap", "service"],
  ["dataplane", "log"],
  ["config", "store"],
  ["protocol", "io", "underlay"],
  ["broker", "ipc", "metrics", "ima"],
  ["ima-client", "agent"],
  ["control"],
  ["lab"],
  ["cli"],
];
const ASSEMBLY_LAYERS: string[][] = [
  ["abi.ts", "drops.ts", "util.ts", "proto"],
  ["state.ts"],
  ["tables"],
  ["pipeline"],
  ["control.ts"],
  ["index.ts"],
];

/**
 * Known violations another branch removes; each must still be there (a stale
 * entry fails, so it is deleted when its fix lands).
 */
// Known upward imports still to be removed, each with why it is there (none now).
const PENDING: Record<string, string> = {};

function sources(dir: string, out: string[] = []): string[] {
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (f.endsWith(".ts") && !f.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** The relative imports of each file: [file, imported file], paths from the repo root, .ts. */
function importGraph(dir: string): [string, string][] {
  const edges: [string, string][] = [];
  for (const f of sources(dir)) {
    for (const imp of ts.preProcessFile(readFileSync(f, "utf8"), true, true).importedFiles) {
      if (!imp.fileName.startsWith(".")) continue;
      let target = resolve(dirname(f), imp.fileName).replace(/\.js$/, ".ts");
      if (!target.endsWith(".ts")) target += ".ts"; // AssemblyScript imports name no extension
      edges.push([relative(repo, f), relative(repo, target)]);
    }
  }
  return edges;
}

interface Layering { unitOf(file: string): string; layerOf(unit: string): number }

function layering(root: string, layers: string[][]): Layering {
  const named = new Map<string, number>();
  layers.forEach((l, i) => l.forEach((u) => named.set(u, i)));
  const unitOf = (file: string) => {
    const rest = relative(root, file).split("/");
    if (rest.length > 1) return rest[0];
    return named.has(rest[0]) ? rest[0] : "*.ts";
  };
  const layerOf = (unit: string) => named.get(unit) ?? -1;
  return { unitOf, layerOf };
}

function violations(root: string, layers: string[][]): { unplaced: string[]; wrong: string[] } {
  const { unitOf, layerOf } = layering(root, layers);
  const unplaced = new Set<string>();
  const wrong: string[] = [];
  for (const [from, to] of importGraph(join(repo, root))) {
    const a = unitOf(from), b = unitOf(to);
    for (const u of [a, b]) if (layerOf(u) < 0) unplaced.add(`${root}/${u}`);
    if (a === b || layerOf(a) < 0 || layerOf(b) < 0) continue;
    if (layerOf(b) < layerOf(a)) continue;
    wrong.push(`${from} -> ${to} (${a} is layer ${layerOf(a)}, ${b} is ${layerOf(b) === layerOf(a) ? "the same layer" : `layer ${layerOf(b)}`})`);
  }
  return { unplaced: [...unplaced].sort(), wrong };
}

/** The order as the README writes it: top first, ">" between layers, "|" between the units of one. */
function renderLayers(root: string, layers: string[][]): string {
  return `${root}/: ` + [...layers].reverse().map((l) => l.map((u) => (u === "*.ts" ? `${root}/*.ts` : u)).join(" | ")).join(" > ");
}

test("host/: every import points down a layer (README Layers)", () => {
  const { unplaced, wrong } = violations("host", HOST_LAYERS);
  assert.equal(unplaced, [], "folders or root files without a layer");
  const key = (w: string) => w.slice(0, w.indexOf(" ("));
  const pending = new Set(Object.keys(PENDING));
  const found = new Set(wrong.map(key));
  assert.equal(wrong.filter((w) => !pending.has(key(w))), [], "imports up or sideways");
  assert.equal([...pending].filter((p) => !found.has(p)), [], "PENDING entries whose import is gone: delete them");
});

test("assembly/: every import points down a layer (README Layers)", () => {
  const { unplaced, wrong } = violations("assembly", ASSEMBLY_LAYERS);
  assert.equal(unplaced, [], "folders or root files without a layer");
  assert.equal(wrong, [], "imports up or sideways");
});

test("the check sees what it checks: imports of every kind are read, and an import up a layer is found", () => {
  const edges = importGraph(join(repo, "host"));
  const has = (from: string, to: string) => edges.some(([a, b]) => a === from && b === to);
  assert.ok(has("host/ima/db.ts", "host/domain/profile.ts"), "a type query import(\"...\").T");
  assert.ok(has("host/cli/run.ts", "host/control/core.ts"), "a dynamic import()");
  assert.ok(has("host/dataplane/ops.ts", "host/domain/profile.ts"), "an export ... from");
  assert.ok(edges.length > 300, `${edges.length} imports read`);
  // Turn the order upside down: the same graph must then be full of violations.
  const upsideDown = violations("host", [...HOST_LAYERS].reverse());
  assert.ok(upsideDown.wrong.some((w) => w.startsWith("host/cli/run.ts -> host/control/core.ts")), "cli -> control found when cli sits below control");
});

test("the README writes the same order", () => {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  for (const line of [renderLayers("host", HOST_LAYERS), renderLayers("assembly", ASSEMBLY_LAYERS)])
    assert.ok(readme.includes(line), `README.md lacks the line:\n${line}`);
});

test.run();
