import type { MiddlewareHandler } from "hono";
import { bodyTooLarge } from "../requestBody.js";

/**
 * The body limit as far as the headers tell it, without reading the body: a declared Content-Length
 * over `maxSize` answers 413 at once. A streamed (chunked) body is counted when it is read
 * (`readBodyText`), which happens only after the route and the token were checked.
 *
 * A response to a request whose body was never read (401, 404, 405, 429, ...) closes the
 * connection, so a client cannot keep it busy trickling a body nobody wants.
 *
 * @example
 * app.use(limitBody({ maxSize: 2 * 1024 * 1024 }))
 */
export function limitBody({ maxSize }: { maxSize: number }): MiddlewareHandler {
  return async function limitBody(c, next) {
    if (c.req.method === "GET" || c.req.method === "HEAD") return next();
    const length = c.req.header("Content-Length");
    const streamed = c.req.header("Transfer-Encoding") !== undefined;
    if (!streamed && length !== undefined && Number(length) > maxSize) throw bodyTooLarge(maxSize);
    await next();
    if (length !== "0" && c.get("bodyText") === undefined) c.res.headers.set("Connection", "close");
  };
}
