/**
 * Abuse limits over HTTP on real Postgres: rate limits per caller DID on XRPC methods and per client
 * address on routes without a token (429 RateLimitExceeded with Retry-After), the request timeout and
 * the body limit on every route.
 */
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";

const db = testDatabase();
afterAll(() => db.close());

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const XRPC = "/xrpc/blue.catbird.mls.";
const limited = (env: Record<string, string>) => testApp(db, { RATE_LIMIT_WINDOW_SECONDS: "60", ...env }).app;

async function getConvos(app: ReturnType<typeof limited>, did: string): Promise<Response> {
  return app.request(`${XRPC}getConvos`, { headers: { Authorization: `Bearer ${await tokenFor(did)}` } });
}

async function expectRateLimited(res: Response): Promise<void> {
  expect(res.status).toBe(429);
  expect(await res.json()).toEqual({ error: "RateLimitExceeded", message: expect.any(String) });
  const retryAfter = Number(res.headers.get("Retry-After"));
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
}

describe("rate limit per caller DID", () => {
  it("answers exactly one 429 with Retry-After to N+1 requests in the window, for that caller only", async () => {
    const app = limited({ RATE_LIMIT_PER_DID: "5" });
    const alice = unique("did:plc:alice");
    const replies = await Promise.all(Array.from({ length: 6 }, () => getConvos(app, alice)));
    const statuses = replies.map((res) => res.status).sort();
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    await expectRateLimited(replies.find((res) => res.status === 429)!);

    expect((await getConvos(app, unique("did:plc:bob"))).status).toBe(200);
    await expectRateLimited(await getConvos(app, alice));
  });

  it("counts procedures and queries together, and only authenticated requests", async () => {
    const app = limited({ RATE_LIMIT_PER_DID: "2" });
    const carol = unique("did:plc:carol");
    for (let i = 0; i < 5; i++) expect((await app.request(`${XRPC}getConvos`)).status).toBe(401);
    expect((await getConvos(app, carol)).status).toBe(200);
    const post = await app.request(`${XRPC}updateCursor`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await tokenFor(carol)}`, "Content-Type": "application/json" },
      body: JSON.stringify({ convoId: "none", cursor: "1" }),
    });
    expect(post.status).not.toBe(429);
    await expectRateLimited(await getConvos(app, carol));
  });

  it("is generous by default", async () => {
    expect(loadConfig({})).toMatchObject({
      RATE_LIMIT_PER_DID: 1200,
      RATE_LIMIT_PER_IP: 0,
      RATE_LIMIT_WINDOW_SECONDS: 60,
    });
    const app = testApp(db).app;
    const dave = unique("did:plc:dave");
    const replies = await Promise.all(Array.from({ length: 50 }, () => getConvos(app, dave)));
    expect(replies.every((res) => res.status === 200)).toBe(true);
  });
});

describe("rate limit per client address", () => {
  // What the client claimed first, then the address the proxy saw.
  const from = (address: string) => ({ headers: { "X-Forwarded-For": `10.9.9.9, ${address}` } });

  it("answers exactly one 429 with Retry-After to N+1 requests without a token from one address", async () => {
    const app = limited({ RATE_LIMIT_PER_IP: "3", RATE_LIMIT_IP_HEADER: "X-Forwarded-For" });
    const replies = await Promise.all(
      ["/health", "/health", "/health/ready", "/health"].map((path) => app.request(path, from("203.0.113.7"))),
    );
    expect(replies.map((res) => res.status).sort()).toEqual([200, 200, 200, 429]);
    await expectRateLimited(replies.find((res) => res.status === 429)!);
    expect((await app.request("/health", from("203.0.113.8"))).status).toBe(200);
  });

  it("counts XRPC methods per address on a limit of their own, on by default, before authentication", async () => {
    expect(loadConfig({}).RATE_LIMIT_XRPC_PER_IP).toBe(20_000);
    const app = limited({ RATE_LIMIT_XRPC_PER_IP: "2", RATE_LIMIT_IP_HEADER: "X-Forwarded-For" });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await app.request(`${XRPC}getConvos`, from("203.0.113.20"))).status);
    expect(statuses).toEqual([401, 401, 429]);
    await expectRateLimited(await app.request(`${XRPC}getConvos`, from("203.0.113.20")));
    expect((await app.request(`${XRPC}getConvos`, from("203.0.113.21"))).status).toBe(401);
    // Routes without a token are not on this limit.
    expect((await app.request("/health", from("203.0.113.20"))).status).toBe(200);
  });

  it("counts an IPv6 client by its /64 and an IPv4-mapped address as its IPv4 address", async () => {
    const app = limited({ RATE_LIMIT_PER_IP: "2", RATE_LIMIT_IP_HEADER: "X-Forwarded-For" });
    const replies = [];
    for (const address of ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::abcd"]) {
      replies.push((await app.request("/health", from(address))).status);
    }
    expect(replies).toEqual([200, 200, 429]);
    expect((await app.request("/health", from("2001:db8:1:3::1"))).status).toBe(200);

    const mapped = limited({ RATE_LIMIT_PER_IP: "1", RATE_LIMIT_IP_HEADER: "X-Forwarded-For" });
    expect((await mapped.request("/health", from("198.51.100.7"))).status).toBe(200);
    expect((await mapped.request("/health", from("::ffff:198.51.100.7"))).status).toBe(429);
  });

  it("leaves XRPC methods to the per-caller limit", async () => {
    const app = limited({ RATE_LIMIT_PER_IP: "1", RATE_LIMIT_IP_HEADER: "X-Forwarded-For" });
    const erin = unique("did:plc:erin");
    for (let i = 0; i < 3; i++) {
      const res = await app.request(`${XRPC}getConvos`, {
        headers: { ...from("198.51.100.1").headers, Authorization: `Bearer ${await tokenFor(erin)}` },
      });
      expect(res.status).toBe(200);
    }
  });
});

describe("request limits on every route", () => {
  it("starts no statement once a request has outlived REQUEST_TIMEOUT_MS: 503 NotReady with Retry-After", async () => {
    const alice = unique("did:plc:deadline");
    const { app: plain } = testApp(db);
    const created = await plain.request(`${XRPC}createConvo`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await tokenFor(alice)}`, "Content-Type": "application/json" },
      body: JSON.stringify({ groupId: crypto.randomUUID().replace(/-/g, ""), cipherSuite: SUITE }),
    });
    const convoId = ((await created.json()) as { id: string }).id;
    // getWelcome checks membership, then fetches the welcome: the check comes back after the deadline.
    const statements: string[] = [];
    const slow = withStatementHook(db, async (sql) => {
      statements.push(sql);
      if (sql.includes("is_member")) await new Promise((resolve) => setTimeout(resolve, 300));
    });
    const { app } = testApp(slow, { REQUEST_TIMEOUT_MS: "100" });
    const res = await app.request(`${XRPC}getWelcome?convoId=${convoId}`, {
      headers: { Authorization: `Bearer ${await tokenFor(alice)}` },
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toBe("1");
    expect((await res.json()).error).toBe("NotReady");
    expect(statements.some((sql) => sql.includes("is_member"))).toBe(true);
    expect(statements.filter((sql) => sql.includes("welcome_messages"))).toEqual([]);
  });

  it("answers 413 PayloadTooLarge to a declared body over BODY_LIMIT_BYTES, whatever the route", async () => {
    const { app } = testApp(db, { BODY_LIMIT_BYTES: "1024" });
    const body = "x".repeat(2048);
    for (const path of ["/health", `${XRPC}sendMessage`, "/nowhere"]) {
      const headers = { "Content-Type": "application/json", "Content-Length": String(body.length) };
      const res = await app.request(path, { method: "POST", body, headers });
      expect(res.status, path).toBe(413);
      expect((await res.json()).error).toBe("PayloadTooLarge");
    }
  });
});
