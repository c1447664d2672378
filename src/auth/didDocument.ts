import { formatDidKey, multibaseToBytes, P256_JWT_ALG, parseMultikey, SECP256K1_JWT_ALG } from "@atproto/crypto";
import { z } from "zod";

/** The part of a DID document this server reads; anything else in it is ignored. */
export const didDocument = z.object({
  id: z.string(),
  verificationMethod: z.array(z.unknown()).optional(),
});
export type DidDocument = z.infer<typeof didDocument>;

const verificationMethod = z.object({
  id: z.string(),
  type: z.string(),
  publicKeyMultibase: z.string(),
});

/** Legacy key types carry the bare compressed key; `Multikey` carries its own multicodec prefix. */
const LEGACY_KEY_TYPES: Record<string, string> = {
  EcdsaSecp256k1VerificationKey2019: SECP256K1_JWT_ALG,
  EcdsaSecp256r1VerificationKey2019: P256_JWT_ALG,
};

/**
 * The issuer's AT Protocol signing key as a `did:key`: the verification method with id `#atproto`
 * (relative or absolute). Undefined when there is none or it cannot be decoded.
 */
export function atprotoSigningKey(doc: DidDocument): string | undefined {
  for (const item of doc.verificationMethod ?? []) {
    const method = verificationMethod.safeParse(item);
    if (!method.success) continue;
    const { id, type, publicKeyMultibase } = method.data;
    if (id !== "#atproto" && id !== `${doc.id}#atproto`) continue;
    try {
      if (type === "Multikey") {
        const { jwtAlg, keyBytes } = parseMultikey(publicKeyMultibase);
        return formatDidKey(jwtAlg, keyBytes);
      }
      const jwtAlg = LEGACY_KEY_TYPES[type];
      return jwtAlg ? formatDidKey(jwtAlg, multibaseToBytes(publicKeyMultibase)) : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
