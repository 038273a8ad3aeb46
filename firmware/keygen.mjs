// firmware/keygen --out DIR [--name NAME]: a new Ed25519 key pair for signing
// firmware bundles: DIR/NAME.key (PKCS#8 PEM, mode 0600, keep it off devices)
// and DIR/NAME.pub (SPKI PEM: the key devices trust; firmware/install
// --pubkey for a first install, then the installed image carries it).
// Refuses to overwrite an existing key.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeKeyPair } from "./keys.mjs";
import { keyId } from "./manifest.mjs";

const argv = process.argv.slice(2);
let out, name = "nvedge-release";
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--out") out = argv[++i];
  else if (argv[i] === "--name") name = argv[++i];
  else if (argv[i] === "--help" || argv[i] === "-h") { console.log("usage: firmware/keygen --out DIR [--name NAME]"); process.exit(0); }
  else { console.error(`keygen: unknown argument ${argv[i]} (usage: firmware/keygen --out DIR [--name NAME])`); process.exit(2); }
}
if (!out) { console.error("keygen: --out DIR is required (usage: firmware/keygen --out DIR [--name NAME])"); process.exit(2); }
if (!/^[A-Za-z0-9._-]{1,64}$/.test(name ?? "")) { console.error(`keygen: --name ${name}: letters, digits, . _ - only`); process.exit(2); }
const keyFile = join(out, `${name}.key`), pubFile = join(out, `${name}.pub`);
for (const f of [keyFile, pubFile]) if (existsSync(f)) { console.error(`keygen: ${f} exists; not overwriting a key`); process.exit(1); }
mkdirSync(out, { recursive: true, mode: 0o700 });
const k = makeKeyPair();
writeFileSync(keyFile, k.privatePem, { mode: 0o600 });
writeFileSync(pubFile, k.publicPem, { mode: 0o644 });
console.log(JSON.stringify({ key: keyFile, pub: pubFile, keyId: keyId(k.publicPem) }));
