import { p256, p384, p521 } from "@noble/curves/nist.js";
import { getCiphersuiteFromName, type CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { makeNobleSignatureImpl } from "ts-mls/crypto/implementation/default/makeNobleSignatureImpl.js";
import type { Signature, SignatureAlgorithm } from "ts-mls/crypto/signature.js";

/**
 * Runs `check` with the signature scheme of a cipher suite. False when the suite is unknown or the check throws: a
 * key that is no point on the curve, a signature of the wrong length, are all a bad signature.
 */
export async function verifiesWith(
  suite: CiphersuiteName,
  check: (signature: Signature) => Promise<boolean>,
): Promise<boolean> {
  try {
    const algorithm = getCiphersuiteFromName(suite)?.signature;
    if (!algorithm) return false;
    return await check(await signatureScheme(algorithm));
  } catch {
    return false;
  }
}

/** The ECDSA suites' curves as WebCrypto names them, and noble's reader of their (DER) signatures. */
const ECDSA = {
  P256: { namedCurve: "P-256", hash: "SHA-256", curve: p256 },
  P384: { namedCurve: "P-384", hash: "SHA-384", curve: p384 },
  P521: { namedCurve: "P-521", hash: "SHA-512", curve: p521 },
} as const;

/**
 * A suite's signature scheme (ts-mls's: Ed25519 through WebCrypto, the others through @noble/curves), checking
 * P-256/384/521 and Ed448 signatures through WebCrypto where the runtime has them. noble's P-521 and Ed448 checks take
 * ~8 ms of JavaScript each and hold the event loop meanwhile (100 published packages held the whole server for a
 * second); WebCrypto's native ones take a fraction of that, off the event loop. An input WebCrypto does not take (a
 * key encoding or a curve the runtime lacks, a DER signature noble cannot read) goes to noble, which decides as before.
 */
async function signatureScheme(algorithm: SignatureAlgorithm): Promise<Signature> {
  const noble = await makeNobleSignatureImpl(algorithm);
  const { subtle } = crypto;
  const native = (
    importKey: (publicKey: Uint8Array) => Promise<CryptoKey>,
    params: Parameters<SubtleCrypto["verify"]>[0],
    toRaw: (signature: Uint8Array) => Uint8Array,
  ): Signature => ({
    ...noble,
    async verify(publicKey, message, signature) {
      let key: CryptoKey;
      let raw: Uint8Array;
      try {
        key = await importKey(publicKey);
        raw = toRaw(signature);
      } catch {
        return noble.verify(publicKey, message, signature);
      }
      return subtle.verify(params, key, raw as BufferSource, message as BufferSource);
    },
  });
  if (algorithm === "P256" || algorithm === "P384" || algorithm === "P521") {
    const { namedCurve, hash, curve } = ECDSA[algorithm];
    return native(
      (publicKey) =>
        subtle.importKey("raw", publicKey as BufferSource, { name: "ECDSA", namedCurve }, false, ["verify"]),
      { name: "ECDSA", hash },
      (signature) => curve.Signature.fromBytes(signature, "der").toBytes("compact"),
    );
  }
  if (algorithm === "Ed448") {
    return native(
      (publicKey) => subtle.importKey("raw", publicKey as BufferSource, { name: "Ed448" }, false, ["verify"]),
      { name: "Ed448" },
      (signature) => signature,
    );
  }
  return noble;
}
