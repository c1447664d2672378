/**
 * AT Protocol identities for the auth tests: keys generated here with @atproto/crypto, DID documents
 * carrying them as `#atproto` Multikey verification methods, and service JWTs signed like a PDS signs them
 * (header {alg, typ: "JWT"}, signature = raw 64-byte compact signature over `header.payload`, base64url).
 */
import { P256Keypair, Secp256k1Keypair, type Keypair } from "@atproto/crypto";
import { randomBytes } from "node:crypto";

export const SERVICE_DID = "did:web:mls.test.example";
export const NSID = "blue.catbird.mls.";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** A fresh, syntactically valid did:plc (24 base32 characters). */
export function plcDid(): string {
  return `did:plc:${Array.from(randomBytes(24), (byte) => BASE32[byte % 32]).join("")}`;
}

export function newKeypair(kind: "ES256K" | "ES256"): Promise<Keypair> {
  return kind === "ES256K" ? Secp256k1Keypair.create() : P256Keypair.create();
}

/** The multibase public key (`z...`) of a keypair, as a Multikey verification method carries it. */
export const multikey = (keypair: Keypair) => keypair.did().slice("did:key:".length);

/** A DID document whose `#atproto` key is `keypair`'s (or that has no atproto key at all). */
export function didDocument(did: string, keypair: Keypair | undefined, keyId = "#atproto"): object {
  return {
    "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
    id: did,
    alsoKnownAs: ["at://someone.test"],
    verificationMethod: keypair
      ? [{ id: `${did}${keyId}`, type: "Multikey", controller: did, publicKeyMultibase: multikey(keypair) }]
      : [],
    service: [{ id: "#atproto_pds", type: "AtprotoPersonalDataServer", serviceEndpoint: "https://pds.test" }],
  };
}

export const b64url = (value: string | Uint8Array) => Buffer.from(value).toString("base64url");
export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Claims of a valid token from `iss` for `method`; `overrides` replaces claims, `undefined` removes one. */
export function claims(iss: string, method: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    iss,
    aud: SERVICE_DID,
    exp: nowSeconds() + 60,
    iat: nowSeconds(),
    lxm: `${NSID}${method}`,
    jti: randomBytes(16).toString("hex"),
    ...overrides,
  };
  return Object.fromEntries(Object.entries(base).filter(([, value]) => value !== undefined));
}

/** A service JWT signed by `keypair`; `header` overrides header fields. */
export async function signToken(
  keypair: Keypair,
  payload: Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  const input = `${b64url(JSON.stringify({ alg: keypair.jwtAlg, typ: "JWT", ...header }))}.${b64url(JSON.stringify(payload))}`;
  const signature = await keypair.sign(new TextEncoder().encode(input));
  return `${input}.${b64url(signature)}`;
}
