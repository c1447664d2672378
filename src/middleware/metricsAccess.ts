import type { MiddlewareHandler } from "hono";
import { sha256Hex } from "../bytes.js";
import { authRequired, XrpcError } from "../errors.js";

export interface MetricsAccessOptions {
  /** `METRICS_TOKEN`: when set, `/metrics` on this listener answers only `Authorization: Bearer <token>`. */
  token?: string;
  /** Without a token: true when `/metrics` must not be public here (a separate metrics port, or production). */
  closed: boolean;
}

/**
 * Who may read `/metrics` on the API listener. With a token, whoever sends it; otherwise anyone,
 * unless `closed`, when the route does not exist here (404).
 *
 * @example
 * app.get("/metrics", metricsAccess({ token: config.METRICS_TOKEN, closed: config.NODE_ENV === "production" }), render)
 */
export function metricsAccess({ token, closed }: MetricsAccessOptions): MiddlewareHandler {
  // Compared as digests, so the comparison's time says nothing about the token.
  const expected = token === undefined ? undefined : sha256Hex(token);
  return async function metricsAccess(c, next) {
    if (expected !== undefined) {
      const given = /^Bearer (\S+)$/.exec(c.req.header("Authorization") ?? "")?.[1];
      if (given === undefined || sha256Hex(given) !== expected) {
        throw authRequired("/metrics needs the metrics token as 'Authorization: Bearer <token>'");
      }
    } else if (closed) {
      throw new XrpcError(404, "NotFound", `no such route: ${c.req.method} ${c.req.path}`);
    }
    await next();
  };
}
