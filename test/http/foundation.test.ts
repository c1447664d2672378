/**
 * The foundation's HTTP surface on real Postgres: createConvo, getConvos, getEpoch, health and readiness, and the
 * error model of the contract (API.md). Well-formed calls go through the typed client (`api`); raw requests
 * (`send`, `post`, `get` over `app.request(...)`) are kept for malformed input, tokens and headers, routing, body
 * limits and the bytes' wire forms. Both check every answer alike: a request id, no 5xx but 503, a JSON body
 * and the error shape (`hasRequestId`, test/helpers/client.ts `checkAnswer`).
 */
import { afterAll, describe, expect, it } from "vitest";
import type { Hono } from "hono";
import type { Answer, Input } from "mls-delivery-service/client";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { checkAnswer, checkedFetch, clientFor, outcome } from "../helpers/client.js";
import { randomGroupId, testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { makeGroupWithCommit } from "../helpers/mls.js";
import { freePort } from "../setup/postgres.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const XRPC = "/xrpc/blue.catbird.mls.";
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const db = testDatabase();
afterAll(() => db.close());
const { app } = testApp(db);

interface Member {
  did: string;
  joinedAt: string;
}
interface ConvoView {
  id: string;
  groupId: string;
  creator: string;
  members: Member[];
  epoch: number;
  cipherSuite: string;
  createdAt: string;
  metadata?: { name?: string; description?: string };
}
interface ErrorBody {
  error: string;
  message: string;
}

/** Every response has a request id (the rest of what every answer must have: `checkAnswer`, with `allow503`). */
const hasRequestId = (res: Response) => expect(res.headers.get("X-Request-Id")).toBeTruthy();

/** Sends a raw request and checks its answer (`hasRequestId`, `checkAnswer`); gives its body. */
async function send(path: string, init: RequestInit = {}, target = app) {
  const res = await target.request(path, init);
  hasRequestId(res);
  const { body } = await checkAnswer(res, `${init.method ?? "GET"} ${path}`, { allow503: true });
  return { status: res.status, headers: res.headers, body };
}

/**
 * The typed client (one attempt) acting as `did` on `target`, every answer checked as `send` checks it. A failed
 * check fails the call (the client reports it as a lost connection, with the assertion as its cause).
 */
function api(did: string, target: Hono = app) {
  const checked = checkedFetch(target, { allow503: true });
  return clientFor(target, did, {
    fetch: async (request) => {
      const res = await checked(request);
      hasRequestId(res);
      return res;
    },
  });
}

async function post(method: string, body: unknown, token?: string, target = app) {
  return send(
    `${XRPC}${method}`,
    {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(token && { Authorization: `Bearer ${token}` }) },
      body: typeof body === "string" ? body : JSON.stringify(body),
    },
    target,
  );
}

async function get(method: string, params: Record<string, string>, token?: string) {
  const query = new URLSearchParams(params).toString();
  return send(`${XRPC}${method}${query ? `?${query}` : ""}`, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
}

async function expectError(response: Promise<{ status: number; body: unknown }>, status: number, error: string) {
  const { status: actual, body } = await response;
  expect({ status: actual, error: (body as ErrorBody).error }).toEqual({ status, error });
}

async function newCaller(prefix = "did:plc:") {
  const did = unique(prefix);
  return { did, token: await tokenFor(did) };
}

/** A conversation `did` creates through the typed client. */
async function createConvo(did: string, fields: Partial<Input<"createConvo">> = {}): Promise<ConvoView> {
  const { status, data } = await api(did).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE, ...fields });
  expect(status).toBe(200);
  return data;
}

/** The raw form of createConvo, for the bytes' wire forms. */
async function createConvoRaw(token: string, fields: Record<string, unknown> = {}): Promise<ConvoView> {
  const { status, body } = await post(
    "createConvo",
    { groupId: randomGroupId(), cipherSuite: SUITE, ...fields },
    token,
  );
  expect(status, JSON.stringify(body)).toBe(200);
  return body as ConvoView;
}

/** A typed client's error answer as `{status, error}`. */
async function expectFailure<T>(call: Promise<Answer<T>>, status: number, error: string) {
  const answer = await outcome(call);
  expect({ status: answer.status, error: answer.error }).toEqual({ status, error });
}

describe("health", () => {
  it("GET /health answers ok without a token", async () => {
    const { status, body } = await send("/health");
    expect(status).toBe(200);
    expect(body).toEqual({ status: "ok" });
  });

  it("GET /health/ready answers ready when the database is reachable", async () => {
    const { status, body } = await send("/health/ready");
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: "ready", driver: "postgres" });
  });

  it("GET /health/ready answers 503 NotReady with Retry-After when the database is unreachable", async () => {
    const port = await freePort();
    const unreachable = createPostgresDatabase(`postgres://postgres@127.0.0.1:${port}/none`, { max: 1 });
    try {
      const { app: down } = testApp(unreachable);
      const { status, headers, body } = await send("/health/ready", {}, down);
      expect(status).toBe(503);
      expect((body as ErrorBody).error).toBe("NotReady");
      expect(Number(headers.get("Retry-After"))).toBeGreaterThan(0);
    } finally {
      await unreachable.close();
    }
  });

  it("an XRPC call answers 503 NotReady, not 500, when the database is unreachable", async () => {
    const port = await freePort();
    const unreachable = createPostgresDatabase(`postgres://postgres@127.0.0.1:${port}/none`, { max: 1 });
    try {
      const { app: down } = testApp(unreachable);
      const { did } = await newCaller();
      const answer = await outcome(api(did, down).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE }));
      expect(answer).toEqual({
        status: 503,
        error: "NotReady",
        message: expect.any(String),
        retryAfter: expect.any(Number),
      });
    } finally {
      await unreachable.close();
    }
  });
});

describe("request id", () => {
  it("echoes the X-Request-Id the client sends, on success and on error", async () => {
    const id = `req-${crypto.randomUUID()}`;
    const ok = await app.request("/health", { headers: { "X-Request-Id": id } });
    expect(ok.headers.get("X-Request-Id")).toBe(id);
    const failed = await app.request(`${XRPC}getConvos`, { headers: { "X-Request-Id": id } });
    expect(failed.status).toBe(401);
    expect(failed.headers.get("X-Request-Id")).toBe(id);
  });

  it("generates one when the client sends none", async () => {
    const a = await app.request("/health");
    const b = await app.request("/health");
    expect(a.headers.get("X-Request-Id")).toBeTruthy();
    expect(a.headers.get("X-Request-Id")).not.toBe(b.headers.get("X-Request-Id"));
  });
});

describe("security headers", () => {
  const API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Strict-Transport-Security": "max-age=15552000; includeSubDomains",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
    "Cross-Origin-Resource-Policy": "same-origin",
  };
  const DOCUMENT_HEADERS = ["Cross-Origin-Opener-Policy", "Origin-Agent-Cluster", "X-XSS-Protection"];

  it("JSON answers, errors included, carry the API's security headers; the HTML reference also a browser's", async () => {
    const answers = [await app.request("/health"), await app.request(`${XRPC}getConvos`)];
    for (const res of answers) {
      for (const [name, value] of Object.entries(API_HEADERS)) expect(res.headers.get(name)).toBe(value);
      for (const name of DOCUMENT_HEADERS) expect(res.headers.get(name)).toBeNull();
    }
    expect(answers[1]!.status).toBe(401);
    const docs = await app.request("/docs");
    expect(docs.headers.get("Content-Type")).toMatch(/^text\/html/);
    for (const [name, value] of Object.entries(API_HEADERS)) expect(docs.headers.get(name)).toBe(value);
    for (const name of DOCUMENT_HEADERS) expect(docs.headers.get(name)).toBeTruthy();
  });
});

describe("authentication", () => {
  const groupBody = () => ({ groupId: randomGroupId(), cipherSuite: SUITE });

  it("refuses a missing token with 401 AuthenticationRequired", async () => {
    await expectError(post("createConvo", groupBody()), 401, "AuthenticationRequired");
    await expectError(get("getConvos", {}), 401, "AuthenticationRequired");
  });

  it("refuses a garbage token with 401 InvalidToken", async () => {
    await expectError(post("createConvo", groupBody(), "not-a-jwt"), 401, "InvalidToken");
    await expectError(post("createConvo", groupBody(), "aaa.bbb.ccc"), 401, "InvalidToken");
    const basic = await send(`${XRPC}getConvos`, { headers: { Authorization: "Basic dXNlcjpwYXNz" } });
    expect({ status: basic.status, error: (basic.body as ErrorBody).error }).toEqual({
      status: 401,
      error: "InvalidToken",
    });
  });

  it("refuses a token signed with another secret with 401 InvalidToken", async () => {
    const token = await tokenFor(unique("did:plc:"), { secret: "another-secret-0123456789abcdef" });
    await expectError(post("createConvo", groupBody(), token), 401, "InvalidToken");
  });

  it("refuses an expired token with 401 ExpiredToken", async () => {
    const token = await tokenFor(unique("did:plc:"), { ttlSeconds: -60 });
    await expectError(get("getConvos", {}, token), 401, "ExpiredToken");
  });

  it("refuses a token whose issuer is not a DID with 401 InvalidToken", async () => {
    const token = await tokenFor("alice");
    await expectError(get("getConvos", {}, token), 401, "InvalidToken");
  });
});

describe("routing", () => {
  it("answers an unknown method with 404 MethodNotImplemented", async () => {
    const { token } = await newCaller();
    await expectError(get("noSuchMethod", {}, token), 404, "MethodNotImplemented");
    await expectError(post("noSuchProcedure", {}, token), 404, "MethodNotImplemented");
  });

  it("answers the wrong verb with 405", async () => {
    const { token } = await newCaller();
    const onProcedure = await get("createConvo", {}, token);
    expect(onProcedure.status).toBe(405);
    expect(onProcedure.headers.get("Allow")).toBe("POST");
    const onQuery = await post("getConvos", {}, token);
    expect(onQuery.status).toBe(405);
    expect(onQuery.headers.get("Allow")).toBe("GET");
  });

  it("answers a body over BODY_LIMIT_BYTES with 413 PayloadTooLarge", async () => {
    const { app: small } = testApp(db, { BODY_LIMIT_BYTES: "1024" });
    const { token } = await newCaller();
    const big = { groupId: randomGroupId(), cipherSuite: SUITE, metadata: { description: "x".repeat(2000) } };
    await expectError(post("createConvo", big, token, small), 413, "PayloadTooLarge");
    // The same limit when the client declares the length up front.
    const body = JSON.stringify(big);
    const declared = await send(
      `${XRPC}createConvo`,
      {
        method: "POST",
        headers: {
          Authorization: `Bearer ${token}`,
          "Content-Type": "application/json",
          "Content-Length": String(body.length),
        },
        body,
      },
      small,
    );
    expect({ status: declared.status, error: (declared.body as ErrorBody).error }).toEqual({
      status: 413,
      error: "PayloadTooLarge",
    });
  });
});

describe("createConvo input validation", () => {
  const valid = () => ({ groupId: randomGroupId(), cipherSuite: SUITE });

  it("refuses malformed JSON and non-object bodies with 400 InvalidRequest", async () => {
    const { token } = await newCaller();
    for (const body of ["{", "not json", "", '{"groupId": }', "[]", "null", "42", '"text"', "[{}]"]) {
      await expectError(post("createConvo", body, token), 400, "InvalidRequest");
    }
  });

  it("refuses wrong types and missing fields with 400 InvalidRequest", async () => {
    const { token } = await newCaller();
    const bodies: unknown[] = [
      {},
      { groupId: randomGroupId() },
      { cipherSuite: SUITE },
      { ...valid(), groupId: 1234 },
      { ...valid(), cipherSuite: 1 },
      { ...valid(), initialMembers: "did:plc:alice" },
      { ...valid(), initialMembers: [42] },
      { ...valid(), metadata: "name" },
      { ...valid(), metadata: { name: 7 } },
      { ...valid(), welcomeMessage: 5 },
      { ...valid(), welcomeMessage: "!!not base64!!", initialMembers: ["did:plc:bob"] },
      { ...valid(), keyPackageHashes: [{ did: "did:plc:bob", hash: "nothex" }], initialMembers: ["did:plc:bob"] },
    ];
    for (const body of bodies) {
      await expectError(post("createConvo", body, token), 400, "InvalidRequest");
    }
  });

  it("refuses malformed DIDs in initialMembers with 400 InvalidRequest", async () => {
    const { token } = await newCaller();
    for (const member of [
      "alice",
      "did:plc",
      "did:plc:",
      "did:PLC:abc",
      "did::abc",
      "did:plc:a b",
      "DID:plc:abc",
      "",
    ]) {
      await expectError(post("createConvo", { ...valid(), initialMembers: [member] }, token), 400, "InvalidRequest");
    }
  });

  it("refuses a bad groupId with 400 InvalidRequest", async () => {
    const { token } = await newCaller();
    const bad = ["", "ABCDEF", "abc", "zz", "ab cd", "ab".repeat(65), `0x${"ab".repeat(4)}`];
    for (const groupId of bad) {
      await expectError(post("createConvo", { groupId, cipherSuite: SUITE }, token), 400, "InvalidRequest");
    }
  });

  it("accepts a groupId of exactly 64 bytes and of 1 byte", async () => {
    const { did } = await newCaller();
    const longest = randomGroupId().padEnd(128, "0");
    expect((await createConvo(did, { groupId: longest })).groupId).toBe(longest);
    // Only 256 one-byte ids exist and other tests may hold some: find a free one.
    const answers = [];
    for (const groupId of crypto.randomUUID().replace(/-/g, "").match(/../g)!) {
      const { status, error } = await outcome(api(did).createConvo({ groupId, cipherSuite: SUITE }));
      answers.push(status === 200 ? "created" : error);
      if (status === 200) break;
    }
    expect(answers.at(-1)).toBe("created");
    expect(answers.slice(0, -1).every((answer) => answer === "InvalidRequest")).toBe(true);
  });

  it("refuses an unknown cipher suite with 400 InvalidCipherSuite", async () => {
    const { did } = await newCaller();
    await expectFailure(
      api(did).createConvo({ ...valid(), cipherSuite: "MLS_999_NOT_A_SUITE" }),
      400,
      "InvalidCipherSuite",
    );
  });

  it("accepts only the configured cipher suites", async () => {
    const { app: narrow } = testApp(db, { CIPHER_SUITES: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256" });
    const { did } = await newCaller();
    await expectFailure(api(did, narrow).createConvo(valid()), 400, "InvalidCipherSuite");
    const { status } = await api(did, narrow).createConvo({
      ...valid(),
      cipherSuite: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
    });
    expect(status).toBe(200);
  });

  it("refuses more than 100 initialMembers with 400 TooManyMembers", async () => {
    const { did } = await newCaller();
    const members = Array.from({ length: 101 }, (_, i) => unique(`did:plc:m${i}x`));
    await expectFailure(api(did).createConvo({ ...valid(), initialMembers: members }), 400, "TooManyMembers");
  });

  it("refuses text the database cannot store (NUL characters) with 400, not 500", async () => {
    const { did } = await newCaller();
    await expectFailure(api(did).createConvo({ ...valid(), metadata: { name: "a\u0000b" } }), 400, "InvalidRequest");
  });
});

describe("createConvo", () => {
  it("answers a convoView with RFC 3339 UTC times", async () => {
    const alice = await newCaller();
    const bob = unique("did:web:bob.");
    const carol = unique("did:plc:");
    const groupId = randomGroupId();
    const { status, data: convo } = await api(alice.did).createConvo({
      groupId,
      cipherSuite: SUITE,
      initialMembers: [bob, carol, bob, alice.did],
      metadata: { name: "Book club", description: "Monthly" },
    });
    expect(status).toBe(200);
    expect(Object.keys(convo).sort()).toEqual(
      ["cipherSuite", "createdAt", "creator", "epoch", "groupId", "id", "members", "metadata"].sort(),
    );
    expect(convo).toMatchObject({ groupId, creator: alice.did, epoch: 0, cipherSuite: SUITE });
    expect(convo.metadata).toEqual({ name: "Book club", description: "Monthly" });
    expect(typeof convo.id).toBe("string");
    expect(convo.id.length).toBeGreaterThan(0);
    expect(convo.createdAt).toMatch(RFC3339_UTC);
    // Duplicates and the creator in initialMembers are folded: three distinct members.
    expect(convo.members.map((m) => m.did).sort()).toEqual([alice.did, bob, carol].sort());
    for (const member of convo.members) {
      expect(Object.keys(member).sort()).toEqual(["did", "joinedAt"]);
      expect(member.joinedAt).toMatch(RFC3339_UTC);
    }
  });

  it("omits metadata when none was given", async () => {
    const alice = await newCaller();
    const convo = await createConvo(alice.did);
    expect(convo.metadata).toBeUndefined();
    expect(convo.members).toEqual([{ did: alice.did, joinedAt: convo.createdAt }]);
  });

  it("accepts welcomeMessage as base64 and as {$bytes}", async () => {
    // Raw: the two wire forms of bytes (the client sends only {$bytes}).
    const alice = await newCaller();
    const bob = unique("did:plc:");
    const welcome = Buffer.from((await makeGroupWithCommit()).welcomeBytes).toString("base64");
    await createConvoRaw(alice.token, { initialMembers: [bob], welcomeMessage: welcome });
    await createConvoRaw(alice.token, { initialMembers: [bob], welcomeMessage: { $bytes: welcome } });
  });

  it("answers the same conversation when the creator repeats the same groupId", async () => {
    const alice = await newCaller();
    const groupId = randomGroupId();
    const first = await createConvo(alice.did, { groupId });
    const again = await createConvo(alice.did, { groupId });
    expect(again).toEqual(first);
    const { data } = await api(alice.did).getConvos();
    expect(data.conversations.map((c) => c.id)).toEqual([first.id]);
  });

  it("refuses another creator's groupId with 409 ConvoExists", async () => {
    const alice = await newCaller();
    const mallory = await newCaller();
    const groupId = randomGroupId();
    await createConvo(alice.did, { groupId });
    await expectFailure(api(mallory.did).createConvo({ groupId, cipherSuite: SUITE }), 409, "ConvoExists");
  });
});

describe("getConvos", () => {
  it("lists the caller's conversations, including those they were added to", async () => {
    const alice = await newCaller();
    const bob = await newCaller();
    const convo = await createConvo(alice.did, { initialMembers: [bob.did] });
    for (const who of [alice, bob]) {
      const { status, data } = await api(who.did).getConvos();
      expect(status).toBe(200);
      expect(data).toEqual({ conversations: [convo] });
    }
    const stranger = await newCaller();
    expect((await api(stranger.did).getConvos()).data).toEqual({ conversations: [] });
  });

  it("pages with a cursor: 7 conversations at limit 3 give 3, 3, 1 with no repeats", async () => {
    // Every conversation gets the same createdAt, so the order rests on the id tiebreak.
    const { app: frozen } = testApp(db, {}, { now: () => new Date("2026-01-02T03:04:05.678Z") });
    const alice = await newCaller();
    const created: string[] = [];
    for (let i = 0; i < 7; i++) {
      const { status, data } = await api(alice.did, frozen).createConvo({
        groupId: randomGroupId(),
        cipherSuite: SUITE,
      });
      expect(status).toBe(200);
      created.push(data.id);
    }

    const pages: string[][] = [];
    let cursor: string | undefined;
    do {
      const { status, data: page } = await api(alice.did).getConvos({ limit: 3, ...(cursor && { cursor }) });
      expect(status).toBe(200);
      pages.push(page.conversations.map((c) => c.id));
      cursor = page.cursor;
      if (cursor !== undefined) expect(typeof cursor).toBe("string");
      else expect(Object.keys(page)).toEqual(["conversations"]);
    } while (cursor && pages.length < 10);

    expect(pages.map((page) => page.length)).toEqual([3, 3, 1]);
    const seen = pages.flat();
    expect(new Set(seen).size).toBe(7);
    expect([...seen].sort()).toEqual([...created].sort());
  });

  it("orders newest first", async () => {
    let now = Date.parse("2026-03-01T00:00:00.000Z");
    const { app: ticking } = testApp(db, {}, { now: () => new Date((now += 1000)) });
    const alice = await newCaller();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { data } = await api(alice.did, ticking).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
      ids.push(data.id);
    }
    const { data } = await api(alice.did).getConvos();
    expect(data.conversations.map((c) => c.id)).toEqual(ids.reverse());
  });

  it("refuses a bad cursor or limit with 400 InvalidRequest", async () => {
    const alice = await newCaller();
    const bad: Record<string, string>[] = [
      { cursor: "garbage" },
      { cursor: "not-a-date_abc" },
      { cursor: "2026-01-01T00:00:00.000Z_" },
      { cursor: "-271821-04-20T00:00:00.000Z_abc" },
      { cursor: "+275760-09-13T00:00:00.000Z_abc" },
      { cursor: "2026-01-01T00:00:00.000Z_a\u0000b" },
      { limit: "0" },
      { limit: "101" },
      { limit: "abc" },
      { limit: "2.5" },
    ];
    for (const params of bad) {
      await expectError(get("getConvos", params, alice.token), 400, "InvalidRequest");
    }
  });
});

describe("getEpoch", () => {
  it("answers the current epoch to a member", async () => {
    const alice = await newCaller();
    const bob = await newCaller();
    const convo = await createConvo(alice.did, { initialMembers: [bob.did] });
    for (const who of [alice, bob]) {
      const { status, data } = await api(who.did).getEpoch({ convoId: convo.id });
      expect(status).toBe(200);
      expect(data).toEqual({ convoId: convo.id, currentEpoch: 0 });
    }
  });

  it("refuses a stranger with 403 NotMember", async () => {
    const alice = await newCaller();
    const stranger = await newCaller();
    const convo = await createConvo(alice.did);
    await expectFailure(api(stranger.did).getEpoch({ convoId: convo.id }), 403, "NotMember");
  });

  it("answers 404 ConvoNotFound for an unknown conversation", async () => {
    const alice = await newCaller();
    await expectFailure(api(alice.did).getEpoch({ convoId: crypto.randomUUID() }), 404, "ConvoNotFound");
  });

  it("refuses a missing or malformed convoId with 400 InvalidRequest", async () => {
    const alice = await newCaller();
    const bad: Record<string, string>[] = [{}, { convoId: "" }, { convoId: "x".repeat(200) }, { convoId: "a\u0000b" }];
    for (const params of bad) {
      await expectError(get("getEpoch", params, alice.token), 400, "InvalidRequest");
    }
  });
});
