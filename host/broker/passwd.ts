// Mosquitto's password file, so one file serves the embedded broker and
// Mosquitto (INTERFACES.md `auth.passwordFile`). Lines as written by
// `mosquitto_passwd` (Mosquitto 2.0):
//   user:$7$<iterations>$<salt b64>$<hash b64>   PBKDF2-HMAC-SHA512, 64-byte hash (the default)
//   user:$6$<salt b64>$<hash b64>                SHA-512(password || salt) (Mosquitto <= 1.6, `-H sha512`)
// Blank lines and lines starting with '#' are ignored, as Mosquitto does.
import { readFileSync } from "node:fs";
import { createHash, pbkdf2, timingSafeEqual, randomBytes } from "node:crypto";

export type PasswordEntry =
  | { kind: "pbkdf2-sha512"; iterations: number; salt: Buffer; hash: Buffer }
  | { kind: "sha512"; salt: Buffer; hash: Buffer };

export class PasswordFileError extends Error {}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function parsePasswordFile(text: string, file = "password file"): Map<string, PasswordEntry> {
  const users = new Map<string, PasswordEntry>();
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    if (line.trim() === "" || line.startsWith("#")) continue;
    const where = `${file}:${n + 1}`;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new PasswordFileError(`${where}: expected user:hash, got ${JSON.stringify(line.slice(0, 40))}`);
    const user = line.slice(0, colon);
    const parts = line.slice(colon + 1).split("$");
    let entry: PasswordEntry;
    if (parts.length === 5 && parts[0] === "" && parts[1] === "7") {
      const iterations = Number(parts[2]);
      if (!Number.isInteger(iterations) || iterations < 1) throw new PasswordFileError(`${where}: user ${user}: bad iteration count ${JSON.stringify(parts[2])}`);
      if (!B64.test(parts[3]) || !B64.test(parts[4])) throw new PasswordFileError(`${where}: user ${user}: salt or hash is not base64`);
      entry = { kind: "pbkdf2-sha512", iterations, salt: Buffer.from(parts[3], "base64"), hash: Buffer.from(parts[4], "base64") };
    } else if (parts.length === 4 && parts[0] === "" && parts[1] === "6") {
      if (!B64.test(parts[2]) || !B64.test(parts[3])) throw new PasswordFileError(`${where}: user ${user}: salt or hash is not base64`);
      entry = { kind: "sha512", salt: Buffer.from(parts[2], "base64"), hash: Buffer.from(parts[3], "base64") };
    } else {
      // A plain-text password (never hashed with `mosquitto_passwd -U`) is refused
      // rather than compared: the file is meant to hold hashes only.
      throw new PasswordFileError(`${where}: user ${user}: unsupported hash (expected $7$ or $6$ as written by mosquitto_passwd)`);
    }
    if (entry.hash.length !== 64) throw new PasswordFileError(`${where}: user ${user}: hash is ${entry.hash.length} bytes, expected 64 (SHA-512)`);
    if (users.has(user)) throw new PasswordFileError(`${where}: user ${user} appears twice`);
    users.set(user, entry);
  }
  return users;
}

export function loadPasswordFile(path: string): Map<string, PasswordEntry> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new PasswordFileError(`${path}: cannot read the password file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parsePasswordFile(text, path);
}

function digest(entry: PasswordEntry, password: Buffer): Promise<Buffer> {
  if (entry.kind === "sha512") {
    return Promise.resolve(createHash("sha512").update(password).update(entry.salt).digest());
  }
  // async: PBKDF2 runs on the libuv pool, so a burst of CONNECTs does not stall the broker
  return new Promise((resolve, reject) =>
    pbkdf2(password, entry.salt, entry.iterations, entry.hash.length, "sha512", (err, key) => (err ? reject(err) : resolve(key))));
}

// Unknown users are checked against this so that a miss costs the same as a
// wrong password (no user enumeration by timing).
const DUMMY: PasswordEntry = { kind: "pbkdf2-sha512", iterations: 101, salt: randomBytes(12), hash: randomBytes(64) };

export async function verifyPassword(users: Map<string, PasswordEntry>, user: string, password: Buffer | undefined):
  Promise<"ok" | "unknown-user" | "bad-password" | "no-password"> {
  const entry = users.get(user);
  const d = await digest(entry ?? DUMMY, password ?? Buffer.alloc(0));
  const equal = timingSafeEqual(d, (entry ?? DUMMY).hash);
  if (!entry) return "unknown-user";
  if (password === undefined) return "no-password";
  return equal ? "ok" : "bad-password";
}
