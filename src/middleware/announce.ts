import type { MiddlewareHandler } from "hono";
import { jsonBody } from "../xrpc.js";

/**
 * Wakes the streams of the conversations a procedure changed, once the change has committed: it sits
 * before the idempotency middleware (whose transaction commits inside `next()`) and does nothing until
 * `next()` returned a 2xx. The conversation is the body's `convoId`, or the answer's `id` (createConvo), and any
 * the handler named with `HandlerContext.changed`; not the body's when the write announced it itself (a send
 * batch, whose statement notified other instances and whose events went to this instance's streams).
 *
 * @example
 * app.post("/xrpc/blue.catbird.mls.sendMessage", auth(...), announce(), idempotency(...), handler)
 */
export function announce(): MiddlewareHandler {
  return async function announce(c, next) {
    await next();
    if (c.res.status < 200 || c.res.status >= 300) return;
    // A replay, or a send batch that woke its streams itself: the body is not parsed for nothing.
    if (!c.get("announced")) {
      const convoId =
        field(await jsonBody(c).catch(() => undefined), "convoId") ?? field(answerOf(c.get("answer")), "id");
      if (convoId !== undefined) c.get("app").events.publish(convoId);
    }
    for (const changed of c.get("changedConvos") ?? []) c.get("app").events.publish(changed);
  };
}

/** The JSON answer the handler sent (kept by `jsonAnswer`); a replayed answer has none and announces nothing new. */
const answerOf = (text: string | undefined): unknown => (text === undefined ? undefined : JSON.parse(text));

function field(body: unknown, name: string): string | undefined {
  const value = body !== null && typeof body === "object" ? (body as Record<string, unknown>)[name] : undefined;
  return typeof value === "string" ? value : undefined;
}
