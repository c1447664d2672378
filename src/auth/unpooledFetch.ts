import { lookup as systemLookup, Resolver } from "node:dns";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import { Readable } from "node:stream";
import { isPublicHost } from "./publicHost.js";

export interface UnpooledFetchOptions {
  /** Hosts that may resolve to private addresses (the PLC directory, test hosts); every other name must resolve to public ones. */
  privateAllowed?: (hostname: string) => boolean;
}

/** One DNS query's longest wait; c-ares queries run on the event loop, not in libuv's 4 worker threads. */
const LOOKUP_TIMEOUT_MS = 2000;

/**
 * A GET-only `fetch` over `node:http(s)` with no connection pool, for DID documents on Node.
 * Node 20's own `fetch` (undici 6) keeps a connection pool per origin for the life of the process,
 * about 30 KB each: one per did:web host that any forged token names, without bound. Redirects
 * are never followed (the caller sees the 3xx), and `signal` aborts the request and its body.
 *
 * Names are resolved by c-ares with a timeout (a name server that never answers cannot tie up the
 * worker threads every other lookup of the process waits for), and a name that resolves only to
 * private, loopback or reserved addresses is refused unless `privateAllowed` says otherwise, so a
 * did:web name cannot point the server at its own network. A request that ends without a response
 * (an upgrade, a closed socket) fails instead of hanging.
 *
 * @example
 * const fetch = createUnpooledFetch({ privateAllowed: (host) => host === "plc.directory" })
 */
export function createUnpooledFetch({ privateAllowed = () => false }: UnpooledFetchOptions = {}): typeof fetch {
  const lookup = boundedLookup(privateAllowed);
  return (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const request = url.protocol === "https:" ? httpsRequest : httpRequest;
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    return new Promise((resolve, reject) => {
      const options = { method: "GET", headers, agent: false, lookup, signal: init.signal ?? undefined };
      const req = request(url, options, (res) => resolve(toResponse(res)));
      req.once("error", reject);
      req.once("upgrade", (_res, socket) => {
        socket.destroy();
        reject(new Error("the host answered with a protocol upgrade"));
      });
      // After a response this does nothing; without one, the request would otherwise never settle.
      req.once("close", () => reject(new Error("the connection closed without a response")));
      req.end();
    });
  };
}

/** For hosts whose addresses are not checked (tests against loopback servers). */
export const unpooledFetch = createUnpooledFetch({ privateAllowed: () => true });

function boundedLookup(privateAllowed: (hostname: string) => boolean): LookupFunction {
  const resolver = new Resolver({ timeout: LOOKUP_TIMEOUT_MS, tries: 1 });
  return (hostname, options, callback) => {
    if (privateAllowed(hostname)) return systemLookup(hostname, options, callback);
    const found: { address: string; family: number }[] = [];
    let pending = 2;
    const settle = () => {
      if (--pending > 0) return;
      const usable = found.filter(({ address }) => isPublicHost(address));
      if (usable.length === 0) {
        const error = Object.assign(new Error(`${hostname} has no public address`), { code: "ENOTFOUND" });
        return callback(error, "", 0);
      }
      if (options.all) return callback(null, usable);
      callback(null, usable[0]!.address, usable[0]!.family);
    };
    resolver.resolve4(hostname, (error, addresses) => {
      if (!error) found.push(...addresses.map((address) => ({ address, family: 4 })));
      settle();
    });
    resolver.resolve6(hostname, (error, addresses) => {
      if (!error) found.push(...addresses.map((address) => ({ address, family: 6 })));
      settle();
    });
  };
}

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
