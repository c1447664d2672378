/** The Node servers' fetch for DID documents: plain GETs without a connection pool per origin. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DidResolver } from "../../src/auth/didResolver.js";
import { createServer } from "node:net";
import { createUnpooledFetch, unpooledFetch } from "../../src/auth/unpooledFetch.js";
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

  it("fails instead of hanging when the host answers with a protocol upgrade", async () => {
    const upgrading = createServer((socket) => {
      socket.once("data", () =>
        socket.end("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"),
      );
    });
    await new Promise<void>((resolve) => upgrading.listen(0, "127.0.0.1", resolve));
    const { port } = upgrading.address() as { port: number };
    try {
      await expect(unpooledFetch(`http://127.0.0.1:${port}/.well-known/did.json`)).rejects.toThrow(/upgrade/);
    } finally {
      upgrading.close();
    }
  });

  it("refuses a name that resolves to no public address unless the host is allowed private ones", async () => {
    const local = server.url.replace("127.0.0.1", "localhost");
    const did = plcDid();
    server.plc.set(did, { id: did });
    await expect(createUnpooledFetch()(`${local}/${did}`)).rejects.toThrow(/no public address/);
    expect(
      (await createUnpooledFetch({ privateAllowed: (host) => host === "localhost" })(`${local}/${did}`)).status,
    ).toBe(200);
  });

  it("the resolver's first caller gives up after its timeout too, when a fetch never settles", async () => {
    const resolver = new DidResolver({
      plcUrl: server.url,
      ttlMs: 60_000,
      failureTtlMs: 1000,
      timeoutMs: 200,
      maxCacheBytes: 1 << 20,
      maxConcurrent: 4,
      maxPerHost: 2,
      allowPrivate: true,
      now: Date.now,
      fetch: () => new Promise<Response>(() => {}),
    });
    await expect(resolver.resolve(plcDid())).rejects.toThrow(/took too long/);
  });
});
