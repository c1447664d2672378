import type { MiddlewareHandler } from "hono";

/** The HTTP methods any route of the app answers, or refuses by name (405). */
const KNOWN = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/**
 * Refuses requests with a method no route knows (501) before anything records them: Node's HTTP parser rejects
 * unknown methods itself, but Deno and Workers pass any token through, and each new one would otherwise become a
 * new `method` label of the request metrics (an attacker's unbounded series). Place it before the request log
 * and metrics (after `requestIds`, so its answer carries an `X-Request-Id` like every other).
 *
 * @example
 * app.use(requestIds(), knownMethods(), requestLog(...), ...)
 */
export function knownMethods(): MiddlewareHandler {
  return async function knownMethods(c, next) {
    if (!KNOWN.has(c.req.method)) {
      return c.json({ error: "NotImplemented", message: "unknown HTTP method" }, 501);
    }
    await next();
  };
}
