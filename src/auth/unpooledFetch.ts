import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";

/**
 * A GET-only `fetch` over `node:http(s)` with no connection pool, for DID documents on Node.
 * Node 20's own `fetch` (undici 6) keeps a connection pool per origin for the life of the process,
 * about 30 KB each: one per did:web host that any forged token names, without bound. Redirects
 * are never followed (the caller sees the 3xx), and `signal` aborts the request and its body.
 */
export const unpooledFetch: typeof fetch = (input, init = {}) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  const headers = Object.fromEntries(new Headers(init.headers).entries());
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", headers, agent: false, signal: init.signal ?? undefined }, (res) =>
      resolve(toResponse(res)),
    );
    req.once("error", reject);
    req.end();
  });
};

function toResponse(res: IncomingMessage): Response {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    for (const item of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, item);
  }
  const status = res.statusCode ?? 502;
  // A Response cannot carry a body with these statuses; none is read from them anyway.
  const empty = status === 204 || status === 304;
  if (empty) res.resume();
  return new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, headers });
}
