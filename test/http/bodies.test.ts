/**
 * Request bodies in the app (`app.request`, real Postgres): nesting depth is checked on every path
 * before parsing, a body is read only after the route and the token were checked, and the body
 * limit holds for declared and streamed bodies alike.
 */
import { afterAll, describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH, nestingExceeds } from "../../src/requestBody.js";
import { randomGroupId, testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { xrpc } from "../helpers/xrpc.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const XRPC = "/xrpc/blue.catbird.mls.";

const db = testDatabase();
afterAll(() => db.close());
const { app } = testApp(db);

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
/** A valid createConvo body with an extra field the schema ignores, holding `extra` (JSON text). */
const withExtra = (extra: string, fields: Record<string, unknown> = {}) =>
  `${JSON.stringify({ groupId: randomGroupId(), cipherSuite: SUITE, ...fields }).slice(0, -1)},"extra":${extra}}`;

/** A body stream that sends `first` and then nothing more, never ending (until cancelled). */
function stalledBody(first: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(first));
    },
  });
}

describe("JSON nesting depth", () => {
  it(`refuses a body nested deeper than ${MAX_JSON_DEPTH} levels in any field, with or without an idempotency key`, async () => {
    const alice = unique("did:plc:deep");
    for (const body of [
      withExtra(nested(1000)),
      withExtra(nested(1000), { idempotencyKey: unique("deep-") }),
      withExtra(nested(MAX_JSON_DEPTH)),
    ]) {
      const reply = await xrpc(app, alice, "createConvo", { body });
      expect(reply.status).toBe(400);
      expect(reply.body).toEqual({ error: "InvalidRequest", message: expect.stringContaining("nested deeper") });
    }
  });

  it("refuses a 2 MB body nested a million levels deep without parsing it", async () => {
    const reply = await xrpc(app, unique("did:plc:deeper"), "sendMessage", { body: nested(1_000_000) });
    expect(reply.status).toBe(400);
    expect(reply.body.message).toContain("nested deeper");
  });

  it(`accepts a body exactly ${MAX_JSON_DEPTH} levels deep`, async () => {
    const reply = await xrpc(app, unique("did:plc:deepok"), "createConvo", {
      body: withExtra(nested(MAX_JSON_DEPTH - 1)),
    });
    expect(reply.status).toBe(200);
  });

  it("counts only brackets outside strings, escaped quotes included", () => {
    expect(nestingExceeds(JSON.stringify({ text: "[".repeat(500) }), 2)).toBe(false);
    expect(nestingExceeds(JSON.stringify({ text: 'say \\"[[[[' }), 2)).toBe(false);
    expect(nestingExceeds(`{"a":"\\\\"}`, 1)).toBe(false);
    expect(nestingExceeds(`{"a":"\\\\",  "b":[[1]]}`, 2)).toBe(true);
    expect(nestingExceeds("[[]]", 2)).toBe(false);
    expect(nestingExceeds("[[[]]]", 2)).toBe(true);
  });
});

describe("when the body is read", () => {
  it("answers a stalled streamed body without a token 401, without reading it", async () => {
    const res = await app.request(`${XRPC}sendMessage`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: stalledBody("{"),
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(401);
    expect(res.headers.get("Connection")).toBe("close");
  });

  it("answers a stalled streamed body from a valid caller 408 RequestTimeout after BODY_READ_TIMEOUT_MS", async () => {
    const { app: quick } = testApp(db, { BODY_READ_TIMEOUT_MS: "200" });
    const res = await quick.request(`${XRPC}sendMessage`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${await tokenFor(unique("did:plc:slow"))}`,
      },
      body: stalledBody("{"),
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(408);
    expect(res.headers.get("Connection")).toBe("close");
    expect(await res.json()).toEqual({ error: "RequestTimeout", message: expect.any(String) });
  });

  it("answers 413 to a declared Content-Length over the limit on any route, before the token is checked", async () => {
    const { app: small } = testApp(db, { BODY_LIMIT_BYTES: "1024" });
    const body = "x".repeat(2048);
    for (const path of ["/health", `${XRPC}sendMessage`, "/nowhere"]) {
      const res = await small.request(path, {
        method: "POST",
        body,
        headers: { "Content-Length": String(body.length) },
      });
      expect(res.status, path).toBe(413);
      expect((await res.json()).error).toBe("PayloadTooLarge");
    }
  });

  it("answers a streamed body over the limit 413 once the caller is known, and 401 before", async () => {
    const { app: small } = testApp(db, { BODY_LIMIT_BYTES: "1024" });
    const body = JSON.stringify({ convoId: "x", ciphertext: "x".repeat(2048), epoch: 0 });
    const anonymous = await small.request(`${XRPC}sendMessage`, { method: "POST", body });
    expect(anonymous.status).toBe(401);
    const known = await small.request(`${XRPC}sendMessage`, {
      method: "POST",
      body,
      headers: { Authorization: `Bearer ${await tokenFor(unique("did:plc:big"))}` },
    });
    expect(known.status).toBe(413);
    expect((await known.json()).error).toBe("PayloadTooLarge");
  });

  it("counts a body whose Content-Length is no number (a runtime that lets it through): 413, not read whole", async () => {
    const { app: small } = testApp(db, { BODY_LIMIT_BYTES: "1024" });
    const body = JSON.stringify({ convoId: "x", ciphertext: "x".repeat(4096), epoch: 0 });
    const res = await small.request(`${XRPC}sendMessage`, {
      method: "POST",
      body,
      headers: { "Content-Length": "lots", Authorization: `Bearer ${await tokenFor(unique("did:plc:big"))}` },
    });
    expect(res.status).toBe(413);
    expect((await res.json()).error).toBe("PayloadTooLarge");
  });
});
