/** The Node servers' fetch for DID documents: plain GETs without a connection pool per origin. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DidResolver } from "../../src/auth/didResolver.js";
import { unpooledFetch } from "../../src/auth/unpooledFetch.js";
import { DidServer } from "./didServer.js";
import { didDocument, newKeypair, plcDid } from "./identities.js";

const server = new DidServer();
beforeAll(() => server.start());
afterAll(() => server.close());

describe("unpooledFetch", () => {
  it("answers status, headers and body, and leaves redirects to the caller", async () => {
    const did = plcDid();
    server.plc.set(did, { id: did });
    const ok = await unpooledFetch(`${server.url}/${did}`, { headers: { Accept: "application/json" } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("application/did+ld+json");
    expect(await ok.json()).toEqual({ id: did });

    server.raw.set("/moved", { status: 302, body: "" });
    expect((await unpooledFetch(`${server.url}/moved`)).status).toBe(302);
    expect((await unpooledFetch(`${server.url}/${plcDid()}`)).status).toBe(404);
  });

  it("gives up when its signal aborts", async () => {
    server.gate = new Promise(() => {});
    try {
      await expect(unpooledFetch(`${server.url}/${plcDid()}`, { signal: AbortSignal.timeout(200) })).rejects.toThrow();
    } finally {
      server.gate = undefined;
    }
  });

  it("serves the DID resolver: a did:plc key resolves through it", async () => {
    const did = plcDid();
    const keypair = await newKeypair("ES256K");
    server.plc.set(did, didDocument(did, keypair));
    const resolver = new DidResolver({
      plcUrl: server.url,
      ttlMs: 60_000,
      failureTtlMs: 1000,
      timeoutMs: 3000,
      maxCacheBytes: 1 << 20,
      maxConcurrent: 4,
      maxPerHost: 2,
      allowPrivate: true,
      now: Date.now,
      fetch: unpooledFetch,
    });
    expect(await resolver.resolve(did)).toEqual({ key: keypair.did(), cached: false });
    expect(await resolver.resolve(did)).toEqual({ key: keypair.did(), cached: true });
  });
});
