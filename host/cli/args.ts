// A small, strict option parser for the CLI: known flags only, clear errors.
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";

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

/**
 * A password from a file (`--password-file FILE`, issue 10 item 9: never on the
 * command line, which `ps` shows): the first line, without its line ending.
 */
export function readPasswordFile(file: string, flag = "--password-file"): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`${flag} ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const pw = text.split(/\r?\n/)[0];
  if (!pw) throw new UsageError(`${flag} ${file}: the file is empty (the password is its first line)`);
  return pw;
}
