// A throw-away PKI for tests (issue 3: "Tests generate their own CA and
// certificates"), made with the openssl CLI: a CA, a server certificate for
// 127.0.0.1/localhost and one client certificate per identity with
// CN=identity (the identity of INTERFACES.md `auth.tls`). Every leaf
// certificate is valid for both TLS ends on 127.0.0.1/localhost. EC P-256
// keys keep generation fast.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

export interface Pki {
  dir: string;
  caFile: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** The client certificate and key files of `id` (made on first use if it was not listed). */
  certFor(id: string): { cert: string; key: string };
  /** A new certificate and key for `id` from the same CA (a renewal), in files named by `tag`; certFor's stay as they are. */
  reissue(id: string, tag: string): { cert: string; key: string };
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"], timeout: 20_000 });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}

function keyAndCsr(dir: string, name: string, cn: string): void {
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`], dir);
}

function sign(dir: string, name: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
    "-days", "2", "-sha256", "-extfile", `${name}.ext`, "-out", `${name}.crt`], dir);
}

export function makePki(dir: string, identities: string[], caName = "nvedge test CA"): Pki {
  mkdirSync(dir, { recursive: true });
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", `/CN=${caName}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  keyAndCsr(dir, "server", "localhost");
  sign(dir, "server", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n" +
    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const certFor = (id: string, tag = "") => {
    // file names are derived from the identity, which is restricted to
    // [A-Za-z0-9._-] by PROTOCOL.md §1; anything else is refused here
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(id) || id.startsWith(".")) throw new Error(`makePki: bad identity ${JSON.stringify(id)}`);
    if (!/^[A-Za-z0-9-]{0,32}$/.test(tag)) throw new Error(`makePki: bad tag ${JSON.stringify(tag)}`);
    const name = `client-${id}${tag ? `.${tag}` : ""}`;
    if (!existsSync(join(dir, `${name}.crt`))) {
      keyAndCsr(dir, name, id);
      // also usable as the broker's own certificate (serverAuth, 127.0.0.1/localhost):
      // an NVE with auth.tls serves its embedded broker and connects to it with one certificate
      sign(dir, name, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n" +
        "extendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
    }
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  };
  for (const id of identities) certFor(id);
  return {
    dir, caFile: join(dir, "ca.crt"), caKey: join(dir, "ca.key"),
    serverCert: join(dir, "server.crt"), serverKey: join(dir, "server.key"), certFor: (id) => certFor(id),
    reissue: (id, tag) => certFor(id, tag || "renewed"),
  };
}
