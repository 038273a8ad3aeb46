// The bundle's manifest and its signature, shared by firmware/build.mjs (which
// writes and signs) and firmware/install.mjs (which verifies).
//
// manifest.json: { format, name, version, arch, node, runtime, files } where
// files maps every path in the bundle (but manifest.json and manifest.sig) to
// { sha256, size, mode }. manifest.sig: the Ed25519 signature (RFC 8032, pure
// Ed25519 as Node's crypto.sign(null, ...) computes it) of manifest.json's
// exact bytes, base64. Keys are PEM (PKCS#8 private, SPKI public).
import { createHash, createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { readdirSync, readFileSync, lstatSync } from "node:fs";
import { join, relative, sep } from "node:path";

export const MANIFEST = "manifest.json";
export const SIGNATURE = "manifest.sig";
export const FORMAT = "nvedge-firmware/1";

/** A refusal: one line, no stack trace (firmware/install prints err.message). */
export class FirmwareError extends Error {}

/** Every regular file under dir, relative paths with "/", sorted. Symlinks and devices are refused. */
export function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push(relative(dir, p).split(sep).join("/"));
      else throw new FirmwareError(`${relative(dir, p)}: not a regular file or directory`);
    }
  };
  walk(dir);
  return out.sort();
}

export function sha256File(path) {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** { path: { sha256, size, mode } } for every file under dir except the manifest and its signature. */
export function fileTable(dir) {
  const files = {};
  for (const f of listFiles(dir)) {
    if (f === MANIFEST || f === SIGNATURE) continue;
    const st = lstatSync(join(dir, f));
    files[f] = { sha256: sha256File(join(dir, f)), size: st.size, mode: (st.mode & 0o111) ? "0755" : "0644" };
  }
  return files;
}

export function signBytes(bytes, privatePem) {
  return sign(null, bytes, createPrivateKey(privatePem)).toString("base64");
}

/** The key's fingerprint, for messages: the first 16 hex digits of the SHA-256 of its DER. */
export function keyId(publicPem) {
  return createHash("sha256").update(createPublicKey(publicPem).export({ type: "spki", format: "der" })).digest("hex").slice(0, 16);
}

/**
 * Verifies an unpacked bundle against a trusted public key: the signature over
 * manifest.json, then every listed file (present, size, sha256) and no file
 * that the manifest does not list. Returns the manifest; throws FirmwareError
 * naming the first fault.
 */
export function verifyDir(dir, publicPem, what = "bundle") {
  let manifestBytes, sig;
  try { manifestBytes = readFileSync(join(dir, MANIFEST)); } catch { throw new FirmwareError(`${what}: no ${MANIFEST} (not an nvedge firmware bundle, or truncated)`); }
  try { sig = readFileSync(join(dir, SIGNATURE), "utf8").trim(); } catch { throw new FirmwareError(`${what}: no ${SIGNATURE} (unsigned or truncated)`); }
  let ok = false;
  try { ok = verify(null, manifestBytes, createPublicKey(publicPem), Buffer.from(sig, "base64")); } catch { ok = false; }
  if (!ok) throw new FirmwareError(`${what}: the signature of ${MANIFEST} does not verify with the trusted key ${keyId(publicPem)} (signed with another key, or modified)`);
  let m;
  try { m = JSON.parse(manifestBytes.toString("utf8")); } catch (e) { throw new FirmwareError(`${what}: ${MANIFEST} is not JSON: ${e.message}`); }
  if (m.format !== FORMAT || typeof m.files !== "object" || m.files === null) throw new FirmwareError(`${what}: ${MANIFEST} is not a ${FORMAT} manifest`);
  const present = new Set(listFiles(dir));
  for (const [f, e] of Object.entries(m.files)) {
    if (!present.has(f)) throw new FirmwareError(`${what}: ${f} is missing (truncated bundle)`);
    const st = lstatSync(join(dir, f));
    if (st.size !== e.size) throw new FirmwareError(`${what}: ${f} is ${st.size} bytes, the manifest says ${e.size} (truncated or modified)`);
    if (sha256File(join(dir, f)) !== e.sha256) throw new FirmwareError(`${what}: ${f} does not match its sha256 in the manifest (modified)`);
  }
  for (const f of present) {
    if (f !== MANIFEST && f !== SIGNATURE && !(f in m.files)) throw new FirmwareError(`${what}: ${f} is not in the manifest (added after signing)`);
  }
  return m;
}
