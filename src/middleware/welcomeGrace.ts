import type { MiddlewareHandler } from "hono";
import { expireWelcomes } from "../services/welcomes.js";
import { jsonBody } from "../xrpc.js";

export interface WelcomeGraceOptions {
  graceSeconds: number;
}

/**
 * Enforces the welcome grace period at the moment it matters: before getWelcome or
 * confirmWelcome runs, the caller's in-flight welcome in that conversation whose fetch is older
 * than the grace period expires (and its key package is consumed), so the handler sees the
 * state the clock says. Cleanup does the same for everyone else.
 *
 * @example
 * app.get("/xrpc/blue.catbird.mls.getWelcome", auth(...), welcomeGrace({ graceSeconds: 300 }), handler)
 */
export function welcomeGrace({ graceSeconds }: WelcomeGraceOptions): MiddlewareHandler {
  return async function welcomeGrace(c, next) {
    const convoId =
      c.req.method === "GET" ? c.req.query("convoId") : convoIdOf(await jsonBody(c).catch(() => undefined));
    if (typeof convoId === "string" && convoId.length > 0 && convoId.length <= 128) {
      const now = c.get("app").clock.now();
      await expireWelcomes(c.get("db"), new Date(now.getTime() - graceSeconds * 1000), now, {
        convoId,
        recipient: c.get("caller"),
      });
    }
    await next();
  };
}

function convoIdOf(body: unknown): unknown {
  return body !== null && typeof body === "object" ? (body as { convoId?: unknown }).convoId : undefined;
}
