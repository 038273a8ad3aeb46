// A small, strict option parser for the CLI: known flags only, clear errors.
import { parseArgs } from "node:util";

export class UsageError extends Error {}

export type OptSpec = Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }>;

export function parseOpts<T extends OptSpec>(argv: string[], spec: T, help: string, positionals = false) {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(help);
    return null;
  }
  try {
    return parseArgs({ args: argv, options: spec, allowPositionals: positionals, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${help}`);
  }
}

export function required<V>(v: V | undefined, flag: string, help: string): V {
  if (v === undefined) throw new UsageError(`missing ${flag}\n${help}`);
  return v;
}
