import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import { WindowCounter } from "../middleware/rateLimit.js";
import { DidResolver } from "./didResolver.js";
import { VerifiedTokens } from "./verifiedTokens.js";
import type { ServiceTokenOptions } from "./verifyServiceToken.js";

/**
 * What authentication and the rate limits keep between requests: the DID resolver's key cache,
 * the verified tokens and the rate-limit counts. Built once per process (once per isolate on
 * Workers, where each request gets an app of its own) and handed to every app.
 */
export interface Guards {
  /** Service-token verification: on when `SERVICE_DID` is set. */
  service: ServiceTokenOptions | undefined;
  /** The HS256 development secret, when development tokens are on. */
  devSecret: string | undefined;
  verifiedTokens: VerifiedTokens;
  counters: {
    /** Routes without a token, per client address. */
    address: WindowCounter;
    /** XRPC methods per client address, before authentication. */
    xrpcAddress: WindowCounter;
    /** XRPC methods per caller DID, after authentication. */
    caller: WindowCounter;
  };
}

/**
 * Development tokens need a secret, and with `SERVICE_DID` set (production) also
 * `ALLOW_DEV_TOKENS`: anyone holding a development secret can act as any DID.
 */
function devTokensOn(config: Config): boolean {
  return config.DEV_JWT_SECRET !== undefined && (config.SERVICE_DID === undefined || config.ALLOW_DEV_TOKENS);
}

/** `fetch`: how DID documents are fetched (the runtime's `fetch` unless given). */
export function createGuards(
  config: Config,
  clock: Clock,
  { fetch }: { fetch?: typeof globalThis.fetch } = {},
): Guards {
  const now = () => clock.now().getTime();
  const windowMs = config.RATE_LIMIT_WINDOW_SECONDS * 1000;
  const resolver =
    config.SERVICE_DID === undefined
      ? undefined
      : new DidResolver({
          plcUrl: config.PLC_DIRECTORY_URL,
          ttlMs: config.DID_CACHE_TTL_SECONDS * 1000,
          failureTtlMs: config.DID_FAILURE_TTL_SECONDS * 1000,
          timeoutMs: config.DID_RESOLVE_TIMEOUT_MS,
          maxCacheBytes: config.DID_CACHE_MAX_BYTES,
          maxConcurrent: config.DID_RESOLVE_MAX_CONCURRENT,
          maxPerHost: config.DID_RESOLVE_MAX_PER_HOST,
          allowPrivate: config.DID_WEB_ALLOW_PRIVATE,
          now,
          fetch,
        });
  return {
    service: resolver && {
      serviceDid: config.SERVICE_DID!,
      resolver,
      clockSkewSeconds: config.JWT_CLOCK_SKEW_SECONDS,
      maxLifetimeSeconds: config.MAX_TOKEN_LIFETIME_SECONDS,
      enforceLxm: config.ENFORCE_LXM,
    },
    devSecret: devTokensOn(config) ? config.DEV_JWT_SECRET : undefined,
    verifiedTokens: new VerifiedTokens({ keyIsCurrent: (iss, key) => resolver?.cachedKey(iss) === key }),
    counters: {
      address: new WindowCounter(windowMs, now),
      xrpcAddress: new WindowCounter(windowMs, now),
      caller: new WindowCounter(windowMs, now),
    },
  };
}
