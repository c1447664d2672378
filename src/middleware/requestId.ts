import type { MiddlewareHandler } from "hono";

declare module "hono" {
  interface ContextVariableMap {
    /** The server's own id for this request: the log's correlation id, never chosen by the client. */
    requestId: string;
    /** The client's `X-Request-Id`, when it is a plausible id (bounded and plain), logged beside ours. */
    clientRequestId: string | undefined;
  }
}

/** What a client's id may look like to be echoed and logged: short, no spaces, quotes or control characters. */
const CLIENT_ID = /^[A-Za-z0-9._:=-]{1,128}$/;

/**
 * Gives every request the server's own id (`requestId`), and keeps the client's `X-Request-Id` apart
 * (`clientRequestId`): a client could otherwise choose the id that other requests' log lines carry.
 * The response's `X-Request-Id` echoes the client's id when it sent a plausible one, else ours.
 *
 * @example
 * app.use(requestIds(), requestLog({ logger }))
 */
export function requestIds(): MiddlewareHandler {
  return async function requestIds(c, next) {
    const own = crypto.randomUUID();
    const given = c.req.header("X-Request-Id");
    const client = given !== undefined && CLIENT_ID.test(given) ? given : undefined;
    c.set("requestId", own);
    c.set("clientRequestId", client);
    c.header("X-Request-Id", client ?? own);
    await next();
  };
}
