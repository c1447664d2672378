import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";

/**
 * Hono's `bodyLimit`, minus its cost for the common request: it reads `c.req.raw.body`, which on
 * Node makes @hono/node-server build a whole web Request with a body stream (about a sixth of a
 * send's CPU). A body without one (GET, HEAD) or with a declared Content-Length is checked here
 * without it; a streamed (chunked) body still goes through `bodyLimit`, which counts its bytes.
 */
export function limitBody(options: { maxSize: number; onError: (c: Context) => never }): MiddlewareHandler {
  const counted = bodyLimit(options);
  return async function limitBody(c, next) {
    if (c.req.method === "GET" || c.req.method === "HEAD") return next();
    const length = c.req.header("Content-Length");
    if (length === undefined || c.req.header("Transfer-Encoding") !== undefined) return counted(c, next);
    if (Number(length) > options.maxSize) options.onError(c);
    return next();
  };
}
