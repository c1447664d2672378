import type { MiddlewareHandler } from "hono";
import { decodeProtectedHeader } from "jose";
import { recordTokenUse } from "../auth/replay.js";
import { devTokenKey, verifyDevToken } from "../auth/verifyDevToken.js";
import {
  SERVICE_TOKEN_ALGORITHMS,
  verifyServiceToken,
  type ServiceTokenOptions,
  type VerifiedToken,
} from "../auth/verifyServiceToken.js";
import type { VerifiedTokens } from "../auth/verifiedTokens.js";
import { authRequired } from "../errors.js";

export interface AuthOptions {
  /** HS256 development secret; when absent, development tokens are refused. */
  devSecret?: string;
  /** AT Protocol inter-service tokens (ES256K, ES256); when absent, they are refused. */
  service?: ServiceTokenOptions;
  /** Tokens verified before; shared by every app of the process (isolate). */
  verifiedTokens: VerifiedTokens;
}

const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;
/** AT Protocol service tokens are well under a kilobyte; a longer one is refused unparsed (and never cached). */
const MAX_TOKEN_LENGTH = 8 * 1024;

/**
 * Authenticates the caller from `Authorization: Bearer <JWT>` and sets `caller` to the token's
 * `iss` DID. The token's `alg` picks the verifier: ES256K/ES256 service tokens (when a service DID
 * is configured) or HS256 development tokens (when a secret is). A token with a `jti` is recorded
 * in the database and refused if used again before it expires. Every failure is a 401 with a
 * specific error name; nothing here can answer 500.
 *
 * @example
 * app.use("/xrpc/*", auth({ service: guards.service, verifiedTokens: guards.verifiedTokens }))
 */
export function auth({ devSecret, service, verifiedTokens }: AuthOptions): MiddlewareHandler {
  const devKey = devSecret ? devTokenKey(devSecret) : undefined;

  /** The token's `alg` picks the verifier. */
  async function verify(token: string, method: string, now: Date): Promise<VerifiedToken> {
    const alg = algorithmOf(token);
    if (alg === "HS256") {
      if (!devKey) throw authRequired("this server accepts no development tokens", "InvalidToken");
      return verifyDevToken(token, await devKey);
    }
    if (alg !== undefined && SERVICE_TOKEN_ALGORITHMS.has(alg)) {
      if (!service) throw authRequired("this server accepts no service tokens", "InvalidToken");
      return verifyServiceToken(token, method, now, service);
    }
    throw authRequired("token algorithm is not accepted", "InvalidToken");
  }

  return async function authenticate(c, next) {
    const header = c.req.header("Authorization");
    if (!header) throw authRequired("an Authorization: Bearer token is required");
    if (header.length > MAX_TOKEN_LENGTH) throw authRequired("the token is too long", "InvalidToken");
    const token = BEARER.exec(header)?.[1];
    if (!token) throw authRequired("the Authorization header must be 'Bearer <JWT>'", "InvalidToken");

    const { db, clock } = c.get("app");
    const now = clock.now();
    const method = c.req.path.slice("/xrpc/".length);
    let verified = verifiedTokens.get(method, token, now);
    if (!verified) {
      verified = await verify(token, method, now);
      verifiedTokens.set(method, token, verified);
    }

    if (verified.jti !== undefined) {
      if (!(await recordTokenUse(db, verified.iss, verified.jti, verified.acceptedUntil, now))) {
        throw authRequired("token has already been used", "TokenReplayed");
      }
    }
    c.set("caller", verified.iss);
    await next();
  };
}

function algorithmOf(token: string): string | undefined {
  try {
    const { alg } = decodeProtectedHeader(token);
    return typeof alg === "string" ? alg : undefined;
  } catch {
    return undefined;
  }
}
