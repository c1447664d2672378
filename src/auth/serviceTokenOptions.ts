import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import { DidResolver } from "./didResolver.js";
import type { ServiceTokenOptions } from "./verifyServiceToken.js";

/** Service-token verification as configured: on when `SERVICE_DID` is set, with one DID cache per app. */
export function serviceTokenOptions(config: Config, clock: Clock): ServiceTokenOptions | undefined {
  if (config.SERVICE_DID === undefined) return undefined;
  return {
    serviceDid: config.SERVICE_DID,
    clockSkewSeconds: config.JWT_CLOCK_SKEW_SECONDS,
    enforceLxm: config.ENFORCE_LXM,
    resolver: new DidResolver({
      plcUrl: config.PLC_DIRECTORY_URL,
      ttlMs: config.DID_CACHE_TTL_SECONDS * 1000,
      timeoutMs: config.DID_RESOLVE_TIMEOUT_MS,
      allowPrivate: config.DID_WEB_ALLOW_PRIVATE,
      now: () => clock.now().getTime(),
    }),
  };
}
