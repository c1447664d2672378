/**
 * The verified tokens' byte budget bounds the heap they hold: each entry's estimate must not be below what it costs,
 * or the budget is exceeded by the difference for every entry.
 */
import { randomBytes } from "node:crypto";
import { decodeJwt } from "jose";
import { describe, expect, it } from "vitest";
import { VerifiedTokens } from "../../src/auth/verifiedTokens.js";
import { acceptedUntil, type VerifiedToken } from "../../src/auth/verifyServiceToken.js";
import { heapUsedAfterGc } from "../helpers/gc.js";
import { b64url, claims, newKeypair, nowSeconds, plcDid } from "./identities.js";

const keypairs = await Promise.all([newKeypair("ES256K"), newKeypair("ES256")]);

interface Cached {
  token: string;
  verified: VerifiedToken;
}

/**
 * What the auth middleware caches for a bearer token: the token as it takes it from the header (a slice of it), and
 * what the verifier returns (claims parsed from the token; a service token's issuer key, a string of its own as each
 * resolution of the issuer makes).
 */
function cached(token: string, key?: string): Cached {
  const sliced = /^Bearer (.+)$/.exec(`Bearer ${token}`)![1]!;
  const { iss, jti, exp } = decodeJwt(token);
  const until = acceptedUntil(exp!);
  const verified =
    key === undefined ? { iss: iss!, jti, acceptedUntil: until } : { iss: iss!, jti, acceptedUntil: until, key };
  return { token: sliced, verified };
}

/** An ES256K service token as a PDS signs it (~380 characters), with the issuer key that verified it. */
function serviceToken(n: number): Cached {
  const payload = claims(plcDid(), "sendMessage");
  // The signature's bytes are random: the cache does not check them.
  const token = `${b64url(JSON.stringify({ alg: "ES256K", typ: "JWT" }))}.${b64url(JSON.stringify(payload))}.${b64url(randomBytes(64))}`;
  return cached(token, keypairs[n % keypairs.length]!.did());
}

/** An HS256 development token as `npm run token` makes it (~180 characters). */
function devToken(): Cached {
  const exp = nowSeconds() + 3600;
  const payload = { iss: plcDid(), iat: exp - 3600, exp };
  return cached(
    `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(payload))}.${b64url(randomBytes(32))}`,
  );
}

/** Caches `count` tokens for one method, as the auth middleware does once it has verified each. */
function fill(tokens: VerifiedTokens, count: number, tokenOf: (n: number) => Cached): void {
  for (let n = 0; n < count; n++) {
    const { token, verified } = tokenOf(n);
    tokens.set("blue.catbird.mls.sendMessage", token, verified);
  }
}

describe("verified tokens", () => {
  it.each([
    ["service tokens", serviceToken],
    ["development tokens", devToken],
  ])("hold no more heap than their byte budget when full of %s", (_, tokenOf) => {
    const budget = 2 * 1024 * 1024;
    fill(new VerifiedTokens({ maxBytes: budget }), 1000, tokenOf); // the code compiled on the way is not the cache's
    const before = heapUsedAfterGc();
    const tokens = new VerifiedTokens({ maxBytes: budget });
    // Past what fits (a service token is estimated at ~1,200 bytes, a development token at ~700): the oldest go, and
    // the budget's worth stays.
    fill(tokens, budget / 400, tokenOf);
    const held = heapUsedAfterGc() - before;
    expect(held).toBeLessThan(budget);
    // Still referenced here, so the collections above could not free it.
    expect(tokens.get("blue.catbird.mls.sendMessage", "none", new Date())).toBeUndefined();
  });
});
