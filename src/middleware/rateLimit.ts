import type { Context, MiddlewareHandler } from "hono";
import { rateLimiter, type ClientRateLimitInfo, type RateLimitInfo, type Store } from "hono-rate-limiter";
import ipaddr from "ipaddr.js";
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
  /** The counts, which must outlive a request: one per process (per isolate on Workers). */
  counter: WindowCounter;
  /** Who a request counts for. */
  key(c: Context): string;
  /** Requests this limiter does not count. */
  skip?(c: Context): boolean;
}

/** Keys past this many bytes in one window share a single count (an attacker's endless keys cost bounded memory). */
const MAX_COUNTED_BYTES = 8 * 1024 * 1024;
const OVERFLOW_KEY = "\u0000overflow";
const MAX_KEY_LENGTH = 512;

/**
 * Hits per key in fixed windows that all keys share, for hono-rate-limiter. No timer (Workers would
 * drop it with the request that set it): the window turns over at the first hit after it ended, and
 * every count goes with it. Each increment answers a snapshot, so concurrent requests for one key
 * each see the count at their own increment.
 */
export class WindowCounter implements Store {
  private counts = new Map<string, number>();
  private bytes = 0;
  private windowEnd = 0;

  constructor(
    readonly windowMs: number,
    readonly now: () => number = Date.now,
  ) {}

  increment(key: string): ClientRateLimitInfo {
    const now = this.now();
    if (now >= this.windowEnd) {
      this.counts = new Map();
      this.bytes = 0;
      this.windowEnd = now + this.windowMs;
    }
    let counted = key.slice(0, MAX_KEY_LENGTH);
    if (!this.counts.has(counted)) {
      if (this.bytes + counted.length > MAX_COUNTED_BYTES) counted = OVERFLOW_KEY;
      else this.bytes += counted.length;
    }
    const totalHits = (this.counts.get(counted) ?? 0) + 1;
    this.counts.set(counted, totalHits);
    return { totalHits, resetTime: new Date(this.windowEnd) };
  }

  decrement(key: string): void {
    const counted = key.slice(0, MAX_KEY_LENGTH);
    const hits = this.counts.get(counted);
    if (hits) this.counts.set(counted, hits - 1);
  }

  resetKey(key: string): void {
    this.counts.delete(key.slice(0, MAX_KEY_LENGTH));
  }
}

/**
 * A fixed-window rate limit (hono-rate-limiter over a `WindowCounter`: per instance) answering
 * 429 `RateLimitExceeded` with `Retry-After` once a key has used its window. Undefined when off.
 *
 * @example
 * const perCaller = rateLimit({ limit: 600, counter: new WindowCounter(60_000), key: (c) => c.get("caller") })
 */
export function rateLimit({ limit, counter, key, skip }: RateLimitOptions): MiddlewareHandler | undefined {
  if (limit === 0) return undefined;
  const windowSeconds = Math.round(counter.windowMs / 1000);
  return rateLimiter({
    limit,
    windowMs: counter.windowMs,
    keyGenerator: key,
    skip: skip ?? (() => false),
    standardHeaders: "draft-6",
    store: counter,
    handler: (c) => {
      const now = counter.now();
      const resetMs = c.get("rateLimit").resetTime?.getTime() ?? now + counter.windowMs;
      const retryAfter = Math.max(1, Math.ceil((resetMs - now) / 1000));
      throw new XrpcError(429, "RateLimitExceeded", `more than ${limit} requests in ${windowSeconds} s; retry later`, {
        "Retry-After": String(retryAfter),
      });
    },
  });
}

/**
 * The client's address as a rate-limit key: with `header` (the server sits behind a proxy), its last
 * value, the one the proxy added (earlier ones came from the client and prove nothing); otherwise the
 * connection's (Node's socket, Deno's connection info, Cloudflare's `CF-Connecting-IP`). An IPv6
 * address counts by its /64, the block one subscriber gets, so a client cannot pick a fresh address
 * per request; an IPv4-mapped one counts as its IPv4 address.
 */
export function clientAddress(c: Context, header: string | undefined): string {
  return addressKey(header ? (c.req.header(header)?.split(",").at(-1)?.trim() ?? "") : connectionAddress(c));
}

function connectionAddress(c: Context): string {
  const env = c.env as
    { incoming?: { socket?: { remoteAddress?: string } }; remoteAddr?: { hostname?: string } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? env?.remoteAddr?.hostname ?? c.req.header("CF-Connecting-IP") ?? "";
}

function addressKey(address: string): string {
  if (!ipaddr.isValid(address)) return address || "unknown";
  const ip = ipaddr.process(address);
  if (ip.kind() === "ipv4") return ip.toString();
  return `${(ip as ipaddr.IPv6).toNormalizedString().split(":").slice(0, 4).join(":")}::/64`;
}
