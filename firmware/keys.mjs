// Ed25519 key pairs for signing firmware bundles (Node's crypto, RFC 8032).
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";

export function makeKeyPair() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }),
    publicPem: publicKey.export({ type: "spki", format: "pem" }),
  };
}

/** The SPKI PEM of an Ed25519 private key's public half; throws for any other key type. */
export function publicFromPrivate(privatePem) {
  const k = createPrivateKey(privatePem);
  if (k.asymmetricKeyType !== "ed25519") throw new Error(`a ${k.asymmetricKeyType} key, not ed25519`);
  return createPublicKey(k).export({ type: "spki", format: "pem" });
}
