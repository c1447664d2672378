import { getCiphersuiteFromName, type CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { makeNobleSignatureImpl } from "ts-mls/crypto/implementation/default/makeNobleSignatureImpl.js";
import type { Signature } from "ts-mls/crypto/signature.js";

/**
 * Runs `check` with the signature scheme of a cipher suite (Ed25519 through WebCrypto; P-256/384/521 and Ed448
 * through @noble/curves). False when the suite is unknown or the check throws: a key that is no point on the
 * curve, a signature of the wrong length, are all a bad signature.
 */
export async function verifiesWith(
  suite: CiphersuiteName,
  check: (signature: Signature) => Promise<boolean>,
): Promise<boolean> {
  try {
    const algorithm = getCiphersuiteFromName(suite)?.signature;
    if (!algorithm) return false;
    return await check(await makeNobleSignatureImpl(algorithm));
  } catch {
    return false;
  }
}
