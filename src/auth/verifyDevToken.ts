import { errors as joseErrors, jwtVerify } from "jose";
import { authRequired } from "../errors.js";
import { did } from "../schemas.js";
import { JTI } from "./replay.js";
import { acceptedUntil, type VerifiedToken } from "./verifyServiceToken.js";

/** The HMAC key for the development secret, imported once rather than on every verification. */
export function devTokenKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "verify",
  ]);
}

/**
 * Verifies an HS256 development token (`npm run token`) against the shared secret: `iss` must be a
 * DID and `exp` is required. Every failure is a 401 `XrpcError`.
 */
export async function verifyDevToken(token: string, key: CryptoKey): Promise<VerifiedToken> {
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, key, { algorithms: ["HS256"], requiredClaims: ["exp", "iss"] }));
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw authRequired("token has expired", "ExpiredToken");
    throw authRequired("token is invalid", "InvalidToken");
  }
  const { iss, exp, jti } = claims;
  if (!did.safeParse(iss).success) throw authRequired("token issuer must be a DID", "InvalidToken");
  if (jti !== undefined && (typeof jti !== "string" || !JTI.test(jti))) {
    throw authRequired("token jti is malformed", "InvalidToken");
  }
  return { iss: iss as string, jti, acceptedUntil: acceptedUntil(exp as number) };
}
