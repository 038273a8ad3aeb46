// The version of this nvedge (package.json's), for `nvedge --version`, the
// first log line and the NVE's retained status message (issue 13). Found by
// walking up from this module to the package.json named "nvedge", so it holds
// in the source tree, in dist/ and in an installed bundle alike.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function find(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const p = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (p.name === "nvedge" && typeof p.version === "string") return p.version;
    } catch { /* not here */ }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return "unknown";
}

export const VERSION: string = find();
