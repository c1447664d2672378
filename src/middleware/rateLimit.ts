import type { Context, MiddlewareHandler } from "hono";
import { MemoryStore, rateLimiter, type ClientRateLimitInfo, type RateLimitInfo } from "hono-rate-limiter";
import { XrpcError } from "../errors.js";

declare module "hono" {
  interface ContextVariableMap {
    /** Set by the rate limiter: this client's use of its window. */
    rateLimit: RateLimitInfo;
  }
}

export interface RateLimitOptions {
  /** Requests allowed per window and key; 0 turns the limit off (no middleware). */
  limit: number;
  windowSeconds: number;
  /** Who a request counts for. */
  key(c: Context): string;
  /** Requests this limiter does not count. */
  skip?(c: Context): boolean;
}

/**
 * hono-rate-limiter's MemoryStore (0.5.4) returns its live counter from `increment`, and the middleware
 * reads it only after an `await`: concurrent requests for one key then all read the final count, so a
 * burst of N+1 would all be refused. A copy gives each request the count at its own increment.
 */
class SnapshotMemoryStore extends MemoryStore {
  override increment(key: string): ClientRateLimitInfo {
    const { totalHits, resetTime } = super.increment(key);
    return { totalHits, resetTime: resetTime && new Date(resetTime) };
  }
}

/**
 * A fixed-window rate limit (hono-rate-limiter with its in-memory store: per instance) answering
 * 429 `RateLimitExceeded` with `Retry-After` once a key has used its window. Undefined when off.
 *
 * @example
 * const perCaller = rateLimit({ limit: 600, windowSeconds: 60, key: (c) => c.get("caller") })
 */
export function rateLimit({ limit, windowSeconds, key, skip }: RateLimitOptions): MiddlewareHandler | undefined {
  if (limit === 0) return undefined;
  return rateLimiter({
    limit,
    windowMs: windowSeconds * 1000,
    keyGenerator: key,
    skip: skip ?? (() => false),
    standardHeaders: "draft-6",
    store: new SnapshotMemoryStore(),
    handler: (c) => {
      const resetMs = c.get("rateLimit").resetTime?.getTime() ?? Date.now() + windowSeconds * 1000;
      const retryAfter = Math.max(1, Math.ceil((resetMs - Date.now()) / 1000));
      throw new XrpcError(429, "RateLimitExceeded", `more than ${limit} requests in ${windowSeconds} s; retry later`, {
        "Retry-After": String(retryAfter),
      });
    },
  });
}

/**
 * The client's address: with `header` (the server sits behind a proxy), its last value, the one the
 * proxy added (earlier ones came from the client and prove nothing); otherwise the connection's
 * (Node's socket, Deno's connection info, Cloudflare's `CF-Connecting-IP`).
 */
export function clientAddress(c: Context, header: string | undefined): string {
  if (header) return c.req.header(header)?.split(",").at(-1)?.trim() || "unknown";
  const env = c.env as
    { incoming?: { socket?: { remoteAddress?: string } }; remoteAddr?: { hostname?: string } } | undefined;
  return (
    env?.incoming?.socket?.remoteAddress ?? env?.remoteAddr?.hostname ?? c.req.header("CF-Connecting-IP") ?? "unknown"
  );
}
