import type { MiddlewareHandler } from "hono";
import type { Logger } from "../logger.js";

const MAX_LOGGED_PATH = 256;

export interface RequestLogOptions {
  logger: Logger;
  /** Probe paths logged at debug level, so health checks and scrapes do not flood the log. */
  quietPaths?: readonly string[];
}

/**
 * One structured line per request: the server's request id (and the client's, when it sent a
 * plausible one), method, path (never the query string), status, caller DID when authenticated, and
 * duration. Nothing else from headers or bodies is logged, so no token, ciphertext or key package
 * can reach the log. Place it right after `requestIds()`.
 *
 * @example
 * app.use(requestIds(), requestLog({ logger }))
 * // {"time":"…","level":"info","message":"request","requestId":"…","clientRequestId":"…","method":"POST",
 * //  "path":"/xrpc/blue.catbird.mls.sendMessage","status":200,"caller":"did:plc:alice","durationMs":3.2}
 */
export function requestLog({
  logger,
  quietPaths = ["/health", "/health/ready", "/metrics"],
}: RequestLogOptions): MiddlewareHandler {
  const quiet = new Set(quietPaths);
  return async function requestLog(c, next) {
    const started = performance.now();
    await next();
    const path = c.req.path;
    (quiet.has(path) ? logger.debug : logger.info)("request", {
      requestId: c.get("requestId"),
      clientRequestId: c.get("clientRequestId"),
      method: c.req.method,
      // The client chose it (an unknown path can be kilobytes long): bounded like everything else it sends.
      path: path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path,
      status: c.res.status,
      caller: c.get("caller"),
      durationMs: Math.round((performance.now() - started) * 10) / 10,
    });
  };
}
