/**
 * The security matrix of AT Protocol service authentication over HTTP, on real Postgres: keys made
 * here, DID documents served by a PLC directory and a did:web host on loopback, tokens signed like a
 * PDS signs them. Every good token gets through as its issuer; every bad one is a 401 with its name.
 */
import type { Keypair } from "@atproto/crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { randomGroupId, TEST_SECRET, testApp, testDatabase, tokenFor } from "../helpers/context.js";
import { freePort } from "../setup/postgres.js";
import { DidServer } from "./didServer.js";
import {
  b64url,
  claims,
  didDocument,
  newKeypair,
  NSID,
  nowSeconds,
  plcDid,
  SERVICE_DID,
  signToken,
} from "./identities.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const db = testDatabase();
const server = new DidServer();
/** A second pool on the same database: another server instance. */
const otherDb = testDatabase(2);

/** Service auth only (no development secret), resolving through the loopback server. */
const serviceEnv = () => ({
  SERVICE_DID,
  DEV_JWT_SECRET: "",
  PLC_DIRECTORY_URL: server.url,
  DID_WEB_ALLOW_PRIVATE: "true",
});
let app: ReturnType<typeof testApp>["app"];

beforeAll(async () => {
  await server.start();
  app = testApp(db, serviceEnv()).app;
});
afterAll(async () => {
  await server.close();
  await Promise.all([db.close(), otherDb.close()]);
});

/** A did:plc registered with the directory under a fresh key of `kind`. */
async function plcIdentity(kind: "ES256K" | "ES256" = "ES256K") {
  const did = plcDid();
  const keypair = await newKeypair(kind);
  server.plc.set(did, didDocument(did, keypair));
  return { did, keypair };
}

interface Reply {
  status: number;
  body: { error?: string; message?: string; [key: string]: unknown };
  headers: Headers;
}

async function call(
  target: typeof app,
  method: string,
  authorization: string | undefined,
  body?: object,
): Promise<Reply> {
  const headers: Record<string, string> = authorization === undefined ? {} : { Authorization: authorization };
  const res = await target.request(`/xrpc/${NSID}${method}`, {
    method: body ? "POST" : "GET",
    headers: body ? { ...headers, "Content-Type": "application/json" } : headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

const getConvos = (token: string, target = app) => call(target, "getConvos", `Bearer ${token}`);

function expectRefused(reply: Reply, error: string, message?: RegExp): void {
  expect(reply.status, JSON.stringify(reply.body)).toBe(401);
  expect(reply.body.error).toBe(error);
  if (message) expect(reply.body.message).toMatch(message);
}

describe("valid service tokens", () => {
  it("accepts ES256K (secp256k1, did:plc) and the caller is the issuer", async () => {
    const { did, keypair } = await plcIdentity("ES256K");
    const created = await call(app, "createConvo", `Bearer ${await signToken(keypair, claims(did, "createConvo"))}`, {
      groupId: randomGroupId(),
      cipherSuite: SUITE,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    expect(created.body.creator).toBe(did);
  });

  it("accepts ES256 (P-256, did:web) and the caller is the issuer", async () => {
    const did = server.webDid;
    const keypair = await newKeypair("ES256");
    server.web = didDocument(did, keypair);
    const created = await call(app, "createConvo", `Bearer ${await signToken(keypair, claims(did, "createConvo"))}`, {
      groupId: randomGroupId(),
      cipherSuite: SUITE,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    expect(created.body.creator).toBe(did);
  });

  it("accepts a P-256 key on did:plc and a secp256k1 key on did:web", async () => {
    const plc = await plcIdentity("ES256");
    expect((await getConvos(await signToken(plc.keypair, claims(plc.did, "getConvos")))).status).toBe(200);
    const web = await newKeypair("ES256K");
    server.web = didDocument(server.webDid, web);
    const webApp = testApp(db, serviceEnv()).app;
    expect((await getConvos(await signToken(web, claims(server.webDid, "getConvos")), webApp)).status).toBe(200);
  });

  it("accepts a token without lxm, jti or iat when enforcement is off", async () => {
    const { did, keypair } = await plcIdentity();
    const token = await signToken(
      keypair,
      claims(did, "getConvos", { lxm: undefined, jti: undefined, iat: undefined }),
    );
    expect((await getConvos(token)).status).toBe(200);
  });

  it("accepts a token that expired within the clock skew", async () => {
    const { did, keypair } = await plcIdentity();
    const token = await signToken(keypair, claims(did, "getConvos", { exp: nowSeconds() - 10 }));
    expect((await getConvos(token)).status).toBe(200);
  });

  it("caches the DID document: many requests, one resolution", async () => {
    const { did, keypair } = await plcIdentity();
    const tokens = await Promise.all(Array.from({ length: 20 }, () => signToken(keypair, claims(did, "getConvos"))));
    const replies = await Promise.all(tokens.map((token) => getConvos(token)));
    expect(replies.map((reply) => reply.status)).toEqual(tokens.map(() => 200));
    expect(server.fetchesOf(did)).toBe(1);
  });
});

describe("forged and malformed tokens", () => {
  it("refuses a token signed with another key, refreshing a cached document once and not on every try", async () => {
    const { did, keypair } = await plcIdentity();
    const intruder = await newKeypair("ES256K");
    expectRefused(await getConvos(await signToken(intruder, claims(did, "getConvos"))), "InvalidToken", /signature/);
    expect(server.fetchesOf(did)).toBe(1); // fetched for this request: nothing newer to refresh to
    expect((await getConvos(await signToken(keypair, claims(did, "getConvos")))).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      expectRefused(await getConvos(await signToken(intruder, claims(did, "getConvos"))), "InvalidToken", /signature/);
    }
    expect(server.fetchesOf(did)).toBe(2);
  });

  it("refuses a token whose payload was changed after signing", async () => {
    const { did, keypair } = await plcIdentity();
    const victim = await plcIdentity();
    const [header, , signature] = (await signToken(keypair, claims(did, "getConvos"))).split(".");
    // The same signature over another issuer, then over a later expiry.
    for (const payload of [claims(victim.did, "getConvos"), claims(did, "getConvos", { exp: nowSeconds() + 86_400 })]) {
      expectRefused(await getConvos(`${header}.${b64url(JSON.stringify(payload))}.${signature}`), "InvalidToken");
    }
  });

  it("refuses alg none, with and without a signature", async () => {
    const { did, keypair } = await plcIdentity();
    const payload = b64url(JSON.stringify(claims(did, "getConvos")));
    const none = b64url(JSON.stringify({ alg: "none", typ: "JWT" }));
    expectRefused(await getConvos(`${none}.${payload}.`), "InvalidToken", /algorithm/);
    const signed = await signToken(keypair, claims(did, "getConvos"), { alg: "none" });
    expectRefused(await getConvos(signed), "InvalidToken", /algorithm/);
  });

  it("refuses other algorithms, and a key of another curve than the token's alg", async () => {
    const { did, keypair } = await plcIdentity("ES256K");
    for (const alg of ["RS256", "EdDSA", "ES384", "es256k", "HS512"]) {
      expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos"), { alg })), "InvalidToken");
    }
    // A secp256k1 signature presented as ES256 (P-256).
    expectRefused(
      await getConvos(await signToken(keypair, claims(did, "getConvos"), { alg: "ES256" })),
      "InvalidToken",
    );
  });

  it("refuses HS256 when only service auth is configured, even signed with the test secret", async () => {
    const { did } = await plcIdentity();
    expectRefused(await getConvos(await tokenFor(did)), "InvalidToken", /development/);
  });

  it("refuses access, refresh and DPoP token types", async () => {
    const { did, keypair } = await plcIdentity();
    for (const typ of ["at+jwt", "refresh+jwt", "dpop+jwt"]) {
      expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos"), { typ })), "InvalidToken");
    }
  });

  it("refuses a DER or truncated signature", async () => {
    const { did, keypair } = await plcIdentity();
    const [header, payload, signature] = (await signToken(keypair, claims(did, "getConvos"))).split(".");
    const raw = Buffer.from(signature!, "base64url");
    for (const bad of [raw.subarray(0, 63), Buffer.concat([Buffer.from([0x30, 0x44]), raw]), Buffer.alloc(64)]) {
      expectRefused(await getConvos(`${header}.${payload}.${b64url(bad)}`), "InvalidToken");
    }
  });

  it.each([
    ["no header", undefined, "AuthenticationRequired"],
    ["an empty header", "", "AuthenticationRequired"],
    ["Bearer alone", "Bearer", "InvalidToken"],
    ["Bearer and a space", "Bearer ", "InvalidToken"],
    ["two parts", "Bearer abc.def", "InvalidToken"],
    ["four parts", "Bearer a.b.c.d", "InvalidToken"],
    ["dots only", "Bearer ..", "InvalidToken"],
    ["base64 (not base64url)", "Bearer ab+/.cd+/.ef+/", "InvalidToken"],
    ["Latin-1 characters", "Bearer \u00e9.b.c", "InvalidToken"],
    ["Basic credentials", "Basic dXNlcjpwYXNz", "InvalidToken"],
    ["a header that is not JSON", `Bearer ${b64url("nope")}.${b64url("{}")}.${b64url("x")}`, "InvalidToken"],
    ["a header that is a JSON array", `Bearer ${b64url("[1]")}.${b64url("{}")}.${b64url("x")}`, "InvalidToken"],
    [
      "a payload that is not JSON",
      `Bearer ${b64url('{"alg":"ES256K"}')}.${b64url("nope")}.${b64url("x")}`,
      "InvalidToken",
    ],
    [
      "a payload that is a string",
      `Bearer ${b64url('{"alg":"ES256K"}')}.${b64url('"x"')}.${b64url("x")}`,
      "InvalidToken",
    ],
    [
      "an empty payload",
      `Bearer ${b64url('{"alg":"ES256"}')}.${b64url("{}")}.${b64url("x".repeat(64))}`,
      "InvalidToken",
    ],
    [
      "invalid UTF-8",
      `Bearer ${b64url(Buffer.from([0xff, 0xfe, 0x7b]))}.${b64url(Buffer.from([0xc3]))}.AA`,
      "InvalidToken",
    ],
    ["a huge token", `Bearer ${"a".repeat(6000)}.${"b".repeat(6000)}.${"c".repeat(6000)}`, "InvalidToken"],
    ["control characters", "Bearer a.b.c\tx", "InvalidToken"],
  ])("refuses %s in the Authorization header", async (_, header, error) => {
    expectRefused(await call(app, "getConvos", header), error);
  });
});

describe("claims", () => {
  it("refuses an expired token (ExpiredToken), also once the server's clock has moved past exp", async () => {
    const { did, keypair } = await plcIdentity();
    expectRefused(
      await getConvos(await signToken(keypair, claims(did, "getConvos", { exp: nowSeconds() - 120 }))),
      "ExpiredToken",
    );

    const clock = new ManualClock();
    const { app: later } = testApp(db, serviceEnv(), clock);
    const token = await signToken(keypair, claims(did, "getConvos", { jti: undefined }));
    expect((await getConvos(token, later)).status).toBe(200);
    clock.advance(120_000);
    expectRefused(await getConvos(token, later), "ExpiredToken");
  });

  it("refuses a token without exp, or with a non-numeric one", async () => {
    const { did, keypair } = await plcIdentity();
    for (const exp of [undefined, "9999999999", null]) {
      expectRefused(
        await getConvos(await signToken(keypair, claims(did, "getConvos", { exp }))),
        "InvalidToken",
        /exp/,
      );
    }
  });

  it("refuses an iat (or nbf) in the future beyond the skew", async () => {
    const { did, keypair } = await plcIdentity();
    const future = nowSeconds() + 300;
    expectRefused(
      await getConvos(await signToken(keypair, claims(did, "getConvos", { iat: future }))),
      "InvalidToken",
      /iat/,
    );
    expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos", { nbf: future }))), "InvalidToken");
    expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos", { iat: "now" }))), "InvalidToken");
  });

  it("refuses a wrong or missing aud", async () => {
    const { did, keypair } = await plcIdentity();
    for (const aud of ["did:web:other.example", `${SERVICE_DID}#atproto_mls`, [SERVICE_DID], undefined]) {
      expectRefused(
        await getConvos(await signToken(keypair, claims(did, "getConvos", { aud }))),
        "InvalidToken",
        /audience/,
      );
    }
  });

  it("refuses a wrong lxm, and a missing one when ENFORCE_LXM is on", async () => {
    const { did, keypair } = await plcIdentity();
    for (const lxm of [`${NSID}sendMessage`, "com.atproto.repo.createRecord", `${NSID}getConvos#x`, 5]) {
      expectRefused(
        await getConvos(await signToken(keypair, claims(did, "getConvos", { lxm }))),
        "InvalidToken",
        /lxm/,
      );
    }
    const { app: strict } = testApp(db, { ...serviceEnv(), ENFORCE_LXM: "true" });
    expectRefused(
      await getConvos(await signToken(keypair, claims(did, "getConvos", { lxm: undefined })), strict),
      "InvalidToken",
      /lxm/,
    );
    expect((await getConvos(await signToken(keypair, claims(did, "getConvos")), strict)).status).toBe(200);
  });

  it("refuses an issuer that is not a DID, or a malformed jti", async () => {
    const { did, keypair } = await plcIdentity();
    for (const iss of ["alice", "", 5, `${did}#atproto`]) {
      expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos", { iss }))), "InvalidToken");
    }
    for (const jti of ["", "has space", "x".repeat(257), 5, "nul\u0000"]) {
      expectRefused(
        await getConvos(await signToken(keypair, claims(did, "getConvos", { jti }))),
        "InvalidToken",
        /jti/,
      );
    }
  });
});

describe("token lifetime", () => {
  it("refuses a token living longer than MAX_TOKEN_LIFETIME_SECONDS (exp - iat, or exp - now), before any resolution", async () => {
    const { did, keypair } = await plcIdentity();
    const now = nowSeconds();
    for (const lifetime of [
      { iat: now - 10, exp: now + 3600 },
      { iat: undefined, exp: now + 3700 },
      { iat: now, exp: now + 10 ** 9 },
    ]) {
      expectRefused(
        await getConvos(await signToken(keypair, claims(did, "getConvos", lifetime))),
        "InvalidToken",
        /lifetime exceeds 3600 s/,
      );
    }
    expect(server.fetchesOf(did)).toBe(0);
    expect(
      (await getConvos(await signToken(keypair, claims(did, "getConvos", { iat: now, exp: now + 3600 })))).status,
    ).toBe(200);
    const { app: short } = testApp(db, { ...serviceEnv(), MAX_TOKEN_LIFETIME_SECONDS: "60" });
    expectRefused(
      await getConvos(await signToken(keypair, claims(did, "getConvos", { exp: now + 120 })), short),
      "InvalidToken",
      /lifetime/,
    );
  });
});

describe("verified tokens reused", () => {
  it("refuses a token verified with a key the issuer has since rotated away, though it has not expired", async () => {
    const { did, keypair: oldKey } = await plcIdentity();
    const reused = await signToken(oldKey, claims(did, "getConvos", { jti: undefined }));
    expect((await getConvos(reused)).status).toBe(200);
    expect((await getConvos(reused)).status).toBe(200);

    const newKey = await newKeypair("ES256K");
    server.plc.set(did, didDocument(did, newKey));
    expect((await getConvos(await signToken(newKey, claims(did, "getConvos")))).status).toBe(200);
    expectRefused(await getConvos(reused), "InvalidToken", /signature/);
  });

  it("verifies a reused token again once the issuer's key has outlived DID_CACHE_TTL_SECONDS", async () => {
    const clock = new ManualClock();
    const { app: cached } = testApp(db, { ...serviceEnv(), DID_CACHE_TTL_SECONDS: "60" }, clock);
    const { did, keypair: oldKey } = await plcIdentity();
    const reused = await signToken(oldKey, claims(did, "getConvos", { jti: undefined, exp: nowSeconds() + 600 }));
    expect((await getConvos(reused, cached)).status).toBe(200);
    server.plc.set(did, didDocument(did, await newKeypair("ES256K")));
    clock.advance(61_000);
    expectRefused(await getConvos(reused, cached), "InvalidToken", /signature/);
  });
});

describe("replay", () => {
  it("refuses a jti seen before (TokenReplayed)", async () => {
    const { did, keypair } = await plcIdentity();
    const token = await signToken(keypair, claims(did, "getConvos"));
    expect((await getConvos(token)).status).toBe(200);
    expectRefused(await getConvos(token), "TokenReplayed");
    // The same jti is the issuer's own: another issuer may use it.
    const other = await plcIdentity();
    const jti = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()).jti as string;
    expect((await getConvos(await signToken(other.keypair, claims(other.did, "getConvos", { jti })))).status).toBe(200);
  });

  it("refuses a replay on another instance sharing the database, and lets exactly one of concurrent uses through", async () => {
    const { app: second } = testApp(otherDb, serviceEnv());
    const { did, keypair } = await plcIdentity();
    const token = await signToken(keypair, claims(did, "getConvos"));
    expect((await getConvos(token, app)).status).toBe(200);
    expectRefused(await getConvos(token, second), "TokenReplayed");

    const racing = await signToken(keypair, claims(did, "getConvos"));
    const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => getConvos(racing, i % 2 ? app : second)));
    expect(replies.filter((reply) => reply.status === 200)).toHaveLength(1);
    for (const reply of replies.filter((reply) => reply.status !== 200)) expectRefused(reply, "TokenReplayed");
  });

  it("records the jti until the token could no longer be accepted", async () => {
    const { did, keypair } = await plcIdentity();
    const exp = nowSeconds() + 45;
    const token = await signToken(keypair, claims(did, "getConvos", { exp }));
    expect((await getConvos(token)).status).toBe(200);
    const [row] = await db.query<{ expires_at: Date }>(`SELECT expires_at FROM seen_tokens WHERE issuer_did = $1`, [
      did,
    ]);
    expect(row!.expires_at.getTime()).toBe((exp + 30) * 1000);
  });
});

describe("resolution", () => {
  it("refuses a DID the directory does not know, and a did:web host that is down", async () => {
    const keypair = await newKeypair("ES256K");
    expectRefused(await getConvos(await signToken(keypair, claims(plcDid(), "getConvos"))), "InvalidToken", /resolved/);
    const down = `did:web:127.0.0.1%3A${await freePort()}`;
    expectRefused(await getConvos(await signToken(keypair, claims(down, "getConvos"))), "InvalidToken", /resolved/);
  });

  it("refuses DIDs that cannot be resolved at all", async () => {
    const keypair = await newKeypair("ES256K");
    for (const did of [
      "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
      "did:plc:tooshort",
      "did:web:example.com:user:alice",
      "did:example:123",
    ]) {
      expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos"))), "InvalidToken", /resolved/);
    }
  });

  it("refuses broken directory answers: server error, not JSON, not an object, another DID's document, too large", async () => {
    const keypair = await newKeypair("ES256K");
    const replies = [
      { status: 500, body: "{}" },
      { status: 200, body: "<html>" },
      { status: 200, body: "[1,2]" },
      { status: 200, body: JSON.stringify(didDocument(plcDid(), keypair)) },
      { status: 200, body: JSON.stringify({ ...didDocument("x", keypair), pad: "x".repeat(100_000) }) },
      { status: 302, body: "" },
    ];
    for (const reply of replies) {
      const did = plcDid();
      server.raw.set(`/${did}`, reply);
      expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos"))), "InvalidToken", /resolved/);
    }
  });

  it("refuses a DID document without an atproto key", async () => {
    const keypair = await newKeypair("ES256K");
    for (const doc of [
      (did: string) => didDocument(did, undefined),
      (did: string) => didDocument(did, keypair, "#other"),
      (did: string) => ({
        ...didDocument(did, keypair),
        verificationMethod: [{ id: "#atproto", type: "Multikey", publicKeyMultibase: "zzz" }],
      }),
    ]) {
      const did = plcDid();
      server.plc.set(did, doc(did));
      expectRefused(
        await getConvos(await signToken(keypair, claims(did, "getConvos"))),
        "InvalidToken",
        /atproto signing key/,
      );
    }
  });

  it("refuses did:web on loopback and private addresses unless the test flag allows them", async () => {
    const keypair = await newKeypair("ES256");
    server.web = didDocument(server.webDid, keypair);
    const { app: production } = testApp(db, { ...serviceEnv(), DID_WEB_ALLOW_PRIVATE: "false" });
    for (const did of [
      server.webDid,
      "did:web:localhost",
      "did:web:10.0.0.1",
      "did:web:169.254.169.254",
      "did:web:intranet",
    ]) {
      expectRefused(
        await getConvos(await signToken(keypair, claims(did, "getConvos")), production),
        "InvalidToken",
        /private or local/,
      );
    }
  });

  it("follows a key rotation: the new key is accepted after one refresh, the old key refused", async () => {
    const { did, keypair: oldKey } = await plcIdentity();
    expect((await getConvos(await signToken(oldKey, claims(did, "getConvos")))).status).toBe(200);

    const newKey = await newKeypair("ES256");
    server.plc.set(did, didDocument(did, newKey));
    expect((await getConvos(await signToken(newKey, claims(did, "getConvos")))).status).toBe(200);
    expect(server.fetchesOf(did)).toBe(2);
    expectRefused(await getConvos(await signToken(oldKey, claims(did, "getConvos"))), "InvalidToken", /signature/);
    expect((await getConvos(await signToken(newKey, claims(did, "getConvos")))).status).toBe(200);
  });

  it("refuses the old key once the cached document has expired, without any failed signature first", async () => {
    const clock = new ManualClock();
    const { app: cached } = testApp(db, { ...serviceEnv(), DID_CACHE_TTL_SECONDS: "60" }, clock);
    const { did, keypair: oldKey } = await plcIdentity();
    expect((await getConvos(await signToken(oldKey, claims(did, "getConvos")), cached)).status).toBe(200);
    server.plc.set(did, didDocument(did, await newKeypair("ES256K")));
    clock.advance(61_000);
    const token = await signToken(oldKey, claims(did, "getConvos", { exp: nowSeconds() + 3600 }));
    expectRefused(await getConvos(token, cached), "InvalidToken", /signature/);
  });
});

describe("resolution bounds", () => {
  it("keeps serving a known key past its TTL while resolving it fails, so a flood cannot lock its owner out", async () => {
    const clock = new ManualClock();
    const { app: cached } = testApp(db, { ...serviceEnv(), DID_CACHE_TTL_SECONDS: "60" }, clock);
    const { did, keypair } = await plcIdentity();
    expect((await getConvos(await signToken(keypair, claims(did, "getConvos")), cached)).status).toBe(200);
    clock.advance(61_000);
    server.raw.set(`/${did}`, { status: 503, body: "busy" });
    try {
      expect((await getConvos(await signToken(keypair, claims(did, "getConvos")), cached)).status).toBe(200);
    } finally {
      server.raw.delete(`/${did}`);
    }
  });

  it("refuses a token with critical header extensions it does not understand", async () => {
    const { did, keypair } = await plcIdentity();
    const token = await signToken(keypair, claims(did, "getConvos"), { crit: ["b64"], b64: false });
    expectRefused(await getConvos(token), "InvalidToken", /critical/);
  });

  it("remembers a failed resolution briefly: forged tokens for it fetch nothing until DID_FAILURE_TTL_SECONDS", async () => {
    const clock = new ManualClock();
    const { app: bounded } = testApp(db, { ...serviceEnv(), DID_FAILURE_TTL_SECONDS: "30" }, clock);
    const keypair = await newKeypair("ES256K");
    const unknown = plcDid();
    for (let i = 0; i < 3; i++) {
      expectRefused(
        await getConvos(await signToken(keypair, claims(unknown, "getConvos")), bounded),
        "InvalidToken",
        /resolved/,
      );
    }
    expect(server.fetchesOf(unknown)).toBe(1);
    clock.advance(31_000);
    expectRefused(
      await getConvos(await signToken(keypair, claims(unknown, "getConvos")), bounded),
      "InvalidToken",
      /resolved/,
    );
    expect(server.fetchesOf(unknown)).toBe(2);
  });

  it("refuses a DID document over 16 KB, however valid", async () => {
    const { did, keypair } = await plcIdentity();
    server.plc.set(did, { ...didDocument(did, keypair), alsoKnownAs: [`at://${"x".repeat(17 * 1024)}.test`] });
    expectRefused(await getConvos(await signToken(keypair, claims(did, "getConvos"))), "InvalidToken", /too large/);
  });

  it("answers 429 with Retry-After, fetching nothing, past DID_RESOLVE_MAX_CONCURRENT resolutions and past DID_RESOLVE_MAX_PER_HOST at one host", async () => {
    const { app: capped } = testApp(db, {
      ...serviceEnv(),
      DID_RESOLVE_MAX_CONCURRENT: "2",
      DID_RESOLVE_MAX_PER_HOST: "1",
    });
    let release!: () => void;
    server.gate = new Promise((resolve) => (release = resolve));
    try {
      const held = await Promise.all([plcIdentity(), plcIdentity()]);
      const pending = held.map(async ({ did, keypair }) =>
        getConvos(await signToken(keypair, claims(did, "getConvos")), capped),
      );
      await expect.poll(() => held.reduce((sum, { did }) => sum + server.fetchesOf(did), 0)).toBe(2);

      const third = await plcIdentity();
      const busy = await getConvos(await signToken(third.keypair, claims(third.did, "getConvos")), capped);
      expect(busy.status, JSON.stringify(busy.body)).toBe(429);
      expect(busy.body.error).toBe("RateLimitExceeded");
      expect(busy.headers.get("Retry-After")).toBe("1");
      expect(server.fetchesOf(third.did)).toBe(0);
      release();
      expect((await Promise.all(pending)).map((reply) => reply.status)).toEqual([200, 200]);
      expect((await getConvos(await signToken(third.keypair, claims(third.did, "getConvos")), capped)).status).toBe(
        200,
      );
    } finally {
      release();
      server.gate = undefined;
    }

    // One did:web host: the second name on it (another port) waits for no one's slot but its host's.
    server.gate = new Promise((resolve) => (release = resolve));
    try {
      const keypair = await newKeypair("ES256");
      server.web = didDocument(server.webDid, keypair);
      const fetched = server.fetchesOf(server.webDid);
      const first = signToken(keypair, claims(server.webDid, "getConvos")).then((token) => getConvos(token, capped));
      await expect.poll(() => server.fetchesOf(server.webDid)).toBe(fetched + 1);
      const sameHost = `did:web:127.0.0.1%3A${await freePort()}`;
      const busy = await getConvos(await signToken(keypair, claims(sameHost, "getConvos")), capped);
      expect(busy.status, JSON.stringify(busy.body)).toBe(429);
      expect(busy.body.message).toMatch(/at 127\.0\.0\.1/);
      release();
      expect((await first).status).toBe(200);
    } finally {
      release();
      server.gate = undefined;
    }
  });

  it("limits /xrpc per client address before any token work: a flood from one address stops at RATE_LIMIT_XRPC_PER_IP", async () => {
    const { app: limited } = testApp(db, {
      ...serviceEnv(),
      RATE_LIMIT_XRPC_PER_IP: "3",
      RATE_LIMIT_IP_HEADER: "X-Forwarded-For",
    });
    const keypair = await newKeypair("ES256K");
    const forged = await Promise.all(
      Array.from({ length: 5 }, () => signToken(keypair, claims(plcDid(), "getConvos"))),
    );
    const from = (address: string, token: string) =>
      limited.request(`/xrpc/${NSID}getConvos`, {
        headers: { Authorization: `Bearer ${token}`, "X-Forwarded-For": address },
      });
    const statuses = [];
    for (const token of forged) statuses.push((await from("203.0.113.9", token)).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    const dids = forged.map(
      (token) => JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()).iss as string,
    );
    expect(dids.map((did) => server.fetchesOf(did))).toEqual([1, 1, 1, 0, 0]);
    expect((await from("203.0.113.10", forged[4]!)).status).toBe(401);
  });
});

describe("configuration", () => {
  it("refuses HS256 development tokens when SERVICE_DID is set, even with a secret, unless ALLOW_DEV_TOKENS", async () => {
    const { app: production } = testApp(db, { ...serviceEnv(), DEV_JWT_SECRET: TEST_SECRET });
    const { did } = await plcIdentity();
    expectRefused(await getConvos(await tokenFor(did), production), "InvalidToken", /development/);
  });

  it("keeps HS256 development tokens working beside service tokens when explicitly allowed", async () => {
    const { app: both } = testApp(db, { ...serviceEnv(), DEV_JWT_SECRET: TEST_SECRET, ALLOW_DEV_TOKENS: "true" });
    const { did, keypair } = await plcIdentity();
    expect((await getConvos(await tokenFor(did), both)).status).toBe(200);
    expect((await getConvos(await signToken(keypair, claims(did, "getConvos")), both)).status).toBe(200);
  });

  it("refuses service tokens when no SERVICE_DID is configured", async () => {
    const { app: devOnly } = testApp(db, { PLC_DIRECTORY_URL: server.url });
    const { did, keypair } = await plcIdentity();
    expectRefused(
      await getConvos(await signToken(keypair, claims(did, "getConvos")), devOnly),
      "InvalidToken",
      /service tokens/,
    );
  });
});
