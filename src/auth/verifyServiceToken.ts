import { verifySignature } from "@atproto/crypto";
import { base64url, decodeJwt, decodeProtectedHeader, type JWTPayload } from "jose";
import { authRequired, XrpcError } from "../errors.js";
import { did as didSchema } from "../schemas.js";
import { DidResolutionError, ResolverBusyError, type DidResolver } from "./didResolver.js";
import { JTI } from "./replay.js";

/** The algorithms of AT Protocol inter-service tokens. */
export const SERVICE_TOKEN_ALGORITHMS = new Set(["ES256K", "ES256"]);

/** Token types of other AT Protocol flows that must never pass as service tokens. */
const FOREIGN_TOKEN_TYPES = new Set(["at+jwt", "refresh+jwt", "dpop+jwt"]);

export interface ServiceTokenOptions {
  /** This service's DID: every token's `aud`. */
  serviceDid: string;
  resolver: DidResolver;
  clockSkewSeconds: number;
  /** Longest lifetime a token may claim (`exp` − `iat`, or `exp` − now without `iat`). */
  maxLifetimeSeconds: number;
  /** Require `lxm` on every token (otherwise it is checked only when present). */
  enforceLxm: boolean;
}

/** What a verified token tells the server. */
export interface VerifiedToken {
  iss: string;
  jti: string | undefined;
  /** The last moment the token could be accepted (its `exp` plus any leeway): how long to remember its `jti`. */
  acceptedUntil: Date;
  /** The issuer's key that verified a service token: once the issuer's current key is another, verify again. */
  key?: string;
}

/** Far-future `exp` values are remembered until this date (still a valid timestamp in every database and runtime). */
const LATEST = Date.UTC(9999, 11, 31);
export const acceptedUntil = (expSeconds: number) => new Date(Math.min(expSeconds * 1000, LATEST));

const invalid = (message: string) => authRequired(message, "InvalidToken");

/**
 * Verifies an AT Protocol inter-service JWT (ES256K or ES256) for the method `nsid` at `now`:
 * claims first, its lifetime included (no network for a token that is wrong anyway), then the
 * signature against the `#atproto` key of the issuer's DID document, refreshing the key once if it
 * fails (it may have rotated). Every failure is a 401 `XrpcError`, but a 429 when too many DID
 * resolutions are under way to start another.
 *
 * @example
 * const { iss } = await verifyServiceToken(token, "blue.catbird.mls.sendMessage", new Date(), options)
 */
export async function verifyServiceToken(
  token: string,
  nsid: string,
  now: Date,
  { serviceDid, resolver, clockSkewSeconds, maxLifetimeSeconds, enforceLxm }: ServiceTokenOptions,
): Promise<VerifiedToken> {
  const [encodedHeader, encodedPayload, encodedSignature] = token.split(".");
  let alg: unknown;
  let typ: unknown;
  let crit: unknown;
  let claims: JWTPayload;
  let signature: Uint8Array;
  try {
    ({ alg, typ, crit } = decodeProtectedHeader(token));
    claims = decodeJwt(token);
    signature = base64url.decode(encodedSignature ?? "");
  } catch {
    throw invalid("token is not a well-formed JWT");
  }
  if (typeof alg !== "string" || !SERVICE_TOKEN_ALGORITHMS.has(alg)) throw invalid("token algorithm is not accepted");
  if (typeof typ === "string" && FOREIGN_TOKEN_TYPES.has(typ.toLowerCase()))
    throw invalid("token is not a service token");
  // RFC 7515 §4.1.11: a critical extension this server does not understand makes the token invalid.
  if (crit !== undefined) throw invalid("token names critical header extensions this service does not support");

  const { iss, aud, exp, iat, nbf, lxm, jti } = claims;
  const seconds = now.getTime() / 1000;
  if (typeof iss !== "string" || !didSchema.safeParse(iss).success) throw invalid("token issuer must be a DID");
  if (aud !== serviceDid) throw invalid("token audience is not this service");
  if (typeof exp !== "number" || !Number.isFinite(exp)) throw invalid("token must carry a numeric exp");
  if (seconds > exp + clockSkewSeconds) throw authRequired("token has expired", "ExpiredToken");
  if (iat !== undefined && (typeof iat !== "number" || !(iat <= seconds + clockSkewSeconds))) {
    throw invalid("token iat is in the future");
  }
  if (exp - (iat ?? seconds) > maxLifetimeSeconds) {
    throw invalid(`token lifetime exceeds ${maxLifetimeSeconds} s`);
  }
  if (nbf !== undefined && (typeof nbf !== "number" || !(nbf <= seconds + clockSkewSeconds))) {
    throw invalid("token is not valid yet");
  }
  if (lxm !== undefined && lxm !== nsid) throw invalid(`token lxm does not allow ${nsid}`);
  if (lxm === undefined && enforceLxm) throw invalid("token must carry lxm");
  if (jti !== undefined && (typeof jti !== "string" || !JTI.test(jti))) throw invalid("token jti is malformed");
  if (signature.byteLength !== 64) throw invalid("token signature must be a 64-byte compact signature");

  const signed = new TextEncoder().encode(`${encodedHeader}.${encodedPayload}`);
  const key = await verifyWithIssuerKey(iss, alg, signed, signature, resolver);
  return { iss, jti, acceptedUntil: acceptedUntil(exp + clockSkewSeconds), key };
}

async function verifyWithIssuerKey(
  iss: string,
  alg: string,
  signed: Uint8Array,
  signature: Uint8Array,
  resolver: DidResolver,
): Promise<string> {
  const first = await signingKey(resolver, iss, false);
  if (first.key && (await verifies(first.key, alg, signed, signature))) return first.key;
  // A key fetched just now is as new as it gets; a cached one may predate a key rotation.
  const second = first.cached ? await signingKey(resolver, iss, true) : first;
  if (second.key && second.key !== first.key && (await verifies(second.key, alg, signed, signature))) return second.key;
  if (!second.key) throw invalid(`the DID document of ${iss} has no atproto signing key`);
  throw invalid("token signature does not match the issuer's signing key");
}

async function signingKey(resolver: DidResolver, iss: string, refresh: boolean) {
  try {
    return await resolver.resolve(iss, { refresh });
  } catch (error) {
    if (error instanceof ResolverBusyError) {
      throw new XrpcError(429, "RateLimitExceeded", `${error.message}; retry shortly`, { "Retry-After": "1" });
    }
    const reason = error instanceof DidResolutionError ? `: ${error.message}` : "";
    throw invalid(`token issuer could not be resolved${reason}`);
  }
}

/** False for a wrong signature, and for a key of another algorithm than the token's `alg`. */
async function verifies(didKey: string, alg: string, signed: Uint8Array, signature: Uint8Array): Promise<boolean> {
  try {
    return await verifySignature(didKey, signed, signature, { jwtAlg: alg });
  } catch {
    return false;
  }
}
