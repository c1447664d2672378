import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { createLogger, type LogLevel } from "../../src/logger.js";
import { clientFor, outcome } from "../helpers/client.js";
import { randomGroupId, testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage } from "../helpers/mls.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const NSID = "/xrpc/blue.catbird.mls.";

const db = testDatabase();
afterAll(() => db.close());

/** An app whose log lines are kept in `lines`. */
function loggedApp(level: LogLevel = "info") {
  const lines: string[] = [];
  const { app } = testApp(
    db,
    {},
    new ManualClock(),
    createLogger(level, (line) => lines.push(line)),
  );
  const requestLines = () =>
    lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.message === "request");
  return { app, lines, requestLines };
}


describe("request logs", () => {
  it("write one JSON line per request with request id, method, path, status, caller and duration", async () => {
    const { app, lines, requestLines } = loggedApp();
    const alice = unique("did:plc:logs");
    const token = await tokenFor(alice);
    // Raw: the request carries the client's own X-Request-Id, and the test reads the answer's header.
    const response = await app.request(`${NSID}createConvo`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "X-Request-Id": "req-create-1" },
      body: JSON.stringify({ groupId: randomGroupId(), cipherSuite: SUITE }),
    });
    expect(response.status).toBe(200);

    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!);
    expect(entry).toMatchObject({
      level: "info",
      message: "request",
      clientRequestId: "req-create-1",
      method: "POST",
      path: `${NSID}createConvo`,
      status: 200,
      caller: alice,
    });
    expect(entry.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers.get("X-Request-Id")).toBe("req-create-1");
    expect(typeof entry.time).toBe("string");
    expect(entry.durationMs).toBeGreaterThanOrEqual(0);
    expect(requestLines()).toHaveLength(1);
  });

  it("log every request once under concurrency, each with its own generated request id", async () => {
    const { app, requestLines } = loggedApp();
    const client = clientFor(app, unique("did:plc:logsmany"));
    const responses = await Promise.all(Array.from({ length: 20 }, () => client.getConvos()));
    const ids = responses.map((response) => response.requestId);
    const logged = requestLines();
    expect(logged).toHaveLength(20);
    expect(new Set(logged.map((entry) => entry.requestId))).toEqual(new Set(ids));
    expect(new Set(ids).size).toBe(20);
  });

  it("log failures without a caller when there is none, and unknown paths without their query string", async () => {
    const { app, requestLines } = loggedApp();
    expect((await outcome(clientFor(app, null).getConvos())).status).toBe(401);
    expect((await app.request("/nowhere?secret=s3cr3t")).status).toBe(404);
    const [unauthenticated, unknown] = requestLines();
    expect(unauthenticated).toMatchObject({ method: "GET", path: `${NSID}getConvos`, status: 401 });
    expect(unauthenticated).not.toHaveProperty("caller");
    expect(unknown).toMatchObject({ path: "/nowhere", status: 404 });
    expect(JSON.stringify(requestLines())).not.toContain("s3cr3t");
  });

  it("never contain tokens, ciphertext, welcomes or key packages", async () => {
    const { app, lines } = loggedApp();
    const alice = unique("did:plc:leaka");
    const bob = unique("did:plc:leakb");
    const [aliceToken, bobToken] = [await tokenFor(alice), await tokenFor(bob)];
    // The typed client with these very tokens, so the log can be searched for them.
    const [asAlice, asBob] = [
      clientFor(app, null, { token: () => aliceToken }),
      clientFor(app, null, { token: () => bobToken }),
    ];
    // Raw, for the bad token and the bad body below.
    const call = (token: string, method: string, body: unknown) =>
      app.request(`${NSID}${method}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    // A real KeyPackage and Welcome: their fresh public keys make it as distinctive as the secrets.
    const keyPackageBytes = await makeKeyPackage(bob);
    const welcomeBytes = (await makeGroupWithCommit()).welcomeBytes;
    // A distinctive payload, so a leak into the log would be found by substring (its base64, as sent).
    const ciphertextBytes = new TextEncoder().encode(`ciphertext-${crypto.randomUUID()}`);
    const [keyPackage, welcome, ciphertext] = [keyPackageBytes, welcomeBytes, ciphertextBytes].map((bytes) =>
      Buffer.from(bytes).toString("base64"),
    ) as [string, string, string];
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    expect((await asBob.publishKeyPackage({ keyPackage: keyPackageBytes, cipherSuite: SUITE, expires })).status).toBe(
      200,
    );
    const created = await asAlice.createConvo({
      groupId: randomGroupId(),
      cipherSuite: SUITE,
      initialMembers: [bob],
      welcomeMessage: welcomeBytes,
    });
    expect(created.status).toBe(200);
    const convoId = created.data.id;
    expect((await asAlice.sendMessage({ convoId, ciphertext: ciphertextBytes, epoch: 0 })).status).toBe(200);
    const fetched = await asBob.getWelcome({ convoId });
    expect(fetched.status).toBe(200);
    // A bad token and a bad body are logged too, still without their contents.
    expect((await call(`${aliceToken}x`, "sendMessage", { convoId, ciphertext, epoch: 0 })).status).toBe(401);
    expect((await call(aliceToken, "sendMessage", { convoId, ciphertext, epoch: -1 })).status).toBe(400);

    expect(lines).toHaveLength(6);
    const log = lines.join("\n");
    for (const secret of [aliceToken, bobToken, ...aliceToken.split("."), keyPackage, welcome, ciphertext]) {
      expect(log).not.toContain(secret);
    }
  });

  it("carry the server's own request id: a client's id is logged beside it, and only when plausible", async () => {
    const { app, requestLines } = loggedApp();
    const chosen = `victim-${crypto.randomUUID()}`;
    const echoed = await app.request("/nowhere", { headers: { "X-Request-Id": chosen } });
    expect(echoed.headers.get("X-Request-Id")).toBe(chosen);
    for (const hostile of ["x".repeat(129), "a b", 'quote"d', "<script>"]) {
      const res = await app.request("/nowhere", { headers: { "X-Request-Id": hostile } });
      expect(res.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
    }
    const logged = requestLines();
    expect(logged).toHaveLength(5);
    expect(logged[0]).toMatchObject({ clientRequestId: chosen });
    expect(logged.map((entry) => entry.requestId)).not.toContain(chosen);
    for (const entry of logged) expect(entry.requestId).toMatch(/^[0-9a-f-]{36}$/);
    for (const entry of logged.slice(1)) expect(entry).not.toHaveProperty("clientRequestId");
  });

  it("bound the logged path of a long unknown path", async () => {
    const { app, requestLines } = loggedApp();
    expect((await app.request(`/${"a".repeat(5000)}`)).status).toBe(404);
    const [entry] = requestLines();
    expect((entry!.path as string).length).toBeLessThanOrEqual(257);
  });

  it("log health checks and scrapes at debug level only", async () => {
    const quiet = loggedApp("info");
    await quiet.app.request("/health");
    await quiet.app.request("/metrics");
    expect(quiet.lines).toHaveLength(0);

    const verbose = loggedApp("debug");
    await verbose.app.request("/health");
    expect(verbose.requestLines()).toMatchObject([{ level: "debug", path: "/health", status: 200 }]);
  });
});
