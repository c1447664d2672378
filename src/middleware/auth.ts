import type { MiddlewareHandler } from "hono";
import { errors as joseErrors, jwtVerify } from "jose";
import { authRequired } from "../errors.js";
import { did } from "../schemas.js";

export interface AuthOptions {
  /** HS256 development secret; when absent, development tokens are refused. */
  devSecret?: string;
}

const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;

/**
 * Authenticates the caller from `Authorization: Bearer <JWT>` and sets `caller` to the token's
 * `iss` DID. Every failure is a 401 with a specific error name; nothing here can answer 500.
 *
 * @example
 * app.use("/xrpc/*", auth({ devSecret: config.DEV_JWT_SECRET }))
 */
export function auth({ devSecret }: AuthOptions): MiddlewareHandler {
  const key = devSecret ? new TextEncoder().encode(devSecret) : undefined;
  return async function authenticate(c, next) {
    const header = c.req.header("Authorization");
    if (!header) throw authRequired("an Authorization: Bearer token is required");
    const token = BEARER.exec(header)?.[1];
    if (!token) throw authRequired("the Authorization header must be 'Bearer <JWT>'", "InvalidToken");
    if (!key) throw authRequired("this server accepts no development tokens", "InvalidToken");
    let issuer: unknown;
    try {
      const { payload } = await jwtVerify(token, key, { algorithms: ["HS256"], requiredClaims: ["exp", "iss"] });
      issuer = payload.iss;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw authRequired("token has expired", "ExpiredToken");
      throw authRequired("token is invalid", "InvalidToken");
    }
    if (!did.safeParse(issuer).success) throw authRequired("token issuer must be a DID", "InvalidToken");
    c.set("caller", issuer as string);
    await next();
  };
}
