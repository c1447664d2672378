import { afterAll, describe, expect, it } from "vitest";
import { MAX_KEY_PACKAGE_LIFETIME_MS } from "../src/api/publishKeyPackage.js";
import { encodeBase64, sha256Hex } from "../src/bytes.js";
import type { Clock } from "../src/clock.js";
import type { Env } from "../src/config.js";
import { outcome } from "./helpers/client.js";
import { testApp, testDatabase, tokenFor, unique } from "./helpers/context.js";
import { lifetime, makeGroupWithCommit, makeKeyPackage } from "./helpers/mls.js";
import { checkedClient } from "./helpers/xrpc.js";
import type { CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";

const db = testDatabase();
afterAll(() => db.close());

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const OTHER_SUITE = "MLS_128_DHKEMP256_AES128GCM_SHA256_P256";
const HOUR = 60 * 60 * 1000;

/** A fresh real KeyPackage naming `did`; OTHER_SUITE relabels a suite-1 package (see makeKeyPackage). */
const keyPackageFor = (did: string, suite: CiphersuiteName = SUITE) =>
  makeKeyPackage(did, undefined, { cipherSuite: suite });

/** Unique opaque bytes; the 0xffff prefix is no MLS version, so they never parse as MLS. */
function opaqueKeyPackage(size = 64): Uint8Array {
  const bytes = new Uint8Array(size);
  crypto.getRandomValues(bytes.subarray(0, 64));
  bytes[0] = 0xff;
  bytes[1] = 0xff;
  return bytes;
}

function shuffled<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** A clock that stands still unless advanced, so expected expiries are exact. */
class FrozenClock implements Clock {
  private time = Date.now();
  now = () => new Date(this.time);
  advance = (ms: number) => void (this.time += ms);
}

const inHours = (clock: Clock, hours: number) => new Date(clock.now().getTime() + hours * HOUR).toISOString();

/**
 * An app plus small helpers that call it as `did`: `api(did)` is the typed client (its error answers checked to be
 * exactly {error, message}); `post` and `get` are raw requests, for the malformed input of the bad-input cases.
 */
function client(env: Env = {}) {
  const clock = new FrozenClock();
  const { app } = testApp(db, env, clock);
  const api = (did: string) => checkedClient(app, did);
  const post = async (did: string, method: string, body: unknown) =>
    app.request(`/xrpc/blue.catbird.mls.${method}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await tokenFor(did)}`, "Content-Type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  const get = async (did: string, method: string, params: [string, string][]) =>
    app.request(`/xrpc/blue.catbird.mls.${method}?${new URLSearchParams(params)}`, {
      headers: { Authorization: `Bearer ${await tokenFor(did)}` },
    });
  const publish = async (did: string, bytes: Uint8Array, { suite = SUITE, hours = 24 } = {}) => {
    const res = await api(did).publishKeyPackage({ keyPackage: bytes, cipherSuite: suite, expires: inHours(clock, hours) });
    expect(res.status).toBe(200);
  };
  const fetchFor = async (caller: string, dids: string[], suite?: string) => {
    const res = await api(caller).getKeyPackages({ dids, ...(suite && { cipherSuite: suite }) });
    expect(res.status).toBe(200);
    return res.data;
  };
  const stats = async (did: string, suite?: string) => {
    const res = await api(did).getKeyPackageStats(suite ? { cipherSuite: suite } : {});
    expect(res.status).toBe(200);
    return res.data;
  };
  return { app, clock, api, post, get, publish, fetchFor, stats };
}

const storedRows = (owner: string) =>
  db.query<{ hash: string; expires_at: Date; handed_out_to: string | null }>(
    "SELECT hash, expires_at, handed_out_to FROM key_packages WHERE owner_did = $1 ORDER BY id",
    [owner],
  );

describe("publishing and fetching key packages", () => {
  it("hands out a published key package with the server-computed SHA-256 hash", async () => {
    const { api, fetchFor, clock } = client();
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const bytes = await keyPackageFor(alice);
    const res = await api(alice).publishKeyPackage({ keyPackage: bytes, cipherSuite: SUITE, expires: inHours(clock, 24) });
    expect(res.status).toBe(200);
    expect(res.data).toEqual({ success: true });

    const handed = await fetchFor(bob, [alice]);
    expect(handed).toEqual({
      keyPackages: [
        {
          did: alice,
          deviceId: "",
          keyPackage: bytes,
          cipherSuite: SUITE,
          keyPackageHash: await sha256Hex(bytes),
          lastResort: false,
        },
      ],
      missing: [],
    });
    const [row] = await storedRows(alice);
    expect(row?.handed_out_to).toBe(bob);
    // Reserved for Bob: his retry gets the same package, anyone else none.
    expect(await fetchFor(bob, [alice])).toEqual(handed);
    expect(await fetchFor(unique("did:plc:carol"), [alice])).toEqual({ keyPackages: [], missing: [alice] });
  });

  it("stores the same bytes once, refreshes their expiry and counts repeats as duplicates", async () => {
    const { api, publish, clock } = client();
    const alice = unique("did:plc:alice");
    const bytes = await keyPackageFor(alice);
    await publish(alice, bytes, { hours: 1 });
    await publish(alice, bytes, { hours: 48 });
    let rows = await storedRows(alice);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.expires_at.getTime()).toBe(new Date(inHours(clock, 48)).getTime());

    const fresh = [await keyPackageFor(alice), await keyPackageFor(alice)];
    const entry = (b: Uint8Array, hours: number) => ({ keyPackage: b, cipherSuite: SUITE, expires: inHours(clock, hours) });
    // One already stored, two new, one new one repeated within the batch.
    const res = await api(alice).publishKeyPackages({
      keyPackages: [entry(bytes, 72), entry(fresh[0]!, 24), entry(fresh[1]!, 24), entry(fresh[1]!, 96)],
    });
    expect(res.status).toBe(200);
    expect(res.data).toEqual({ published: 2, duplicates: 2 });
    rows = await storedRows(alice);
    expect(rows).toHaveLength(3);
    const expiry = new Map(rows.map((row) => [row.hash, row.expires_at.getTime()]));
    expect(expiry.get(await sha256Hex(bytes))).toBe(new Date(inHours(clock, 72)).getTime());
    expect(expiry.get(await sha256Hex(fresh[1]!))).toBe(new Date(inHours(clock, 96)).getTime());
  });

  it("never hands out a key package twice, even when it is published again", async () => {
    const { publish, fetchFor } = client();
    const alice = unique("did:plc:alice");
    const bytes = await keyPackageFor(alice);
    await publish(alice, bytes);
    expect((await fetchFor(unique("did:plc:bob"), [alice])).keyPackages).toHaveLength(1);
    await publish(alice, bytes, { hours: 48 });
    expect(await fetchFor(unique("did:plc:carol"), [alice])).toEqual({ keyPackages: [], missing: [alice] });
  });

  it("checks a real MLS KeyPackage's cipher suite and lifetime and caps its expiry at notAfter", async () => {
    const { api, fetchFor, clock } = client();
    const alice = unique("did:plc:alice");
    const publish = (bytes: Uint8Array, cipherSuite: string) =>
      outcome(api(alice).publishKeyPackage({ keyPackage: bytes, cipherSuite, expires: inHours(clock, 48) }));
    const now = clock.now();
    const ended = await makeKeyPackage(
      alice,
      lifetime(new Date(now.getTime() - 2 * HOUR), new Date(now.getTime() - HOUR)),
    );
    const shortLived = await makeKeyPackage(alice, lifetime(now, new Date(now.getTime() + 2 * HOUR)));

    const mismatch = await publish(shortLived, OTHER_SUITE);
    expect(mismatch).toEqual({
      status: 400,
      error: "InvalidRequest",
      message: expect.stringContaining(SUITE),
      retryAfter: undefined,
    });
    const expired = await publish(ended, SUITE);
    expect(expired).toEqual({ status: 400, error: "KeyPackageExpired", message: expect.any(String), retryAfter: undefined });

    expect((await publish(shortLived, SUITE)).status).toBe(200);
    const [row] = await storedRows(alice);
    expect(row!.expires_at.getTime()).toBe(Math.floor(now.getTime() / 1000) * 1000 + 2 * HOUR);
    const answer = await fetchFor(unique("did:plc:bob"), [alice]);
    expect(answer.keyPackages).toEqual([
      {
        did: alice,
        deviceId: "",
        keyPackage: shortLived,
        cipherSuite: SUITE,
        keyPackageHash: await sha256Hex(shortLived),
        lastResort: false,
      },
    ]);
  });

  it("refuses a real KeyPackage whose credential names another DID (mallory posing as bob)", async () => {
    const { api, fetchFor, clock } = client();
    const mallory = unique("did:plc:mallory");
    const bob = unique("did:plc:bob");
    const posing = await keyPackageFor(bob);
    const entry = { keyPackage: posing, cipherSuite: SUITE, expires: inHours(clock, 24) };
    const refused = { status: 400, error: "InvalidKeyPackage", message: expect.any(String), retryAfter: undefined };
    expect(await outcome(api(mallory).publishKeyPackage(entry))).toEqual(refused);
    expect(await outcome(api(mallory).publishKeyPackages({ keyPackages: [entry] }))).toEqual(refused);
    expect(await storedRows(mallory)).toEqual([]);
    expect(await fetchFor(unique("did:plc:carol"), [mallory])).toEqual({ keyPackages: [], missing: [mallory] });
  });

  it("stores each package once when 16 concurrent batches send the same packages in shuffled orders", async () => {
    const { api, clock } = client();
    const alice = unique("did:plc:alice");
    const packages = await Promise.all(Array.from({ length: 20 }, () => keyPackageFor(alice)));
    const entries = packages.map((bytes) => ({ keyPackage: bytes, cipherSuite: SUITE, expires: inHours(clock, 24) }));
    const answers = await Promise.all(
      Array.from({ length: 16 }, () => outcome(api(alice).publishKeyPackages({ keyPackages: shuffled(entries) }))),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(16).fill(200));
    expect(answers.reduce((sum, answer) => sum + (answer.data?.published ?? 0), 0)).toBe(20);
    const rows = await storedRows(alice);
    expect(rows).toHaveLength(20);
    expect(new Set(rows.map((row) => row.hash))).toEqual(new Set(packages.map((bytes) => sha256Hex(bytes))));
  });

  it("caps an expiry beyond 90 days", async () => {
    const { publish, clock } = client();
    const alice = unique("did:plc:alice");
    await publish(alice, await keyPackageFor(alice), { hours: 24 * 365 });
    const [row] = await storedRows(alice);
    expect(row!.expires_at.getTime()).toBe(clock.now().getTime() + MAX_KEY_PACKAGE_LIFETIME_MS);
  });
});

describe("getKeyPackages", () => {
  it("gives 10 concurrent callers 5 distinct key packages and 5 answers of missing", async () => {
    const { publish, fetchFor } = client();
    const alice = unique("did:plc:alice");
    const published = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const bytes = await keyPackageFor(alice);
        await publish(alice, bytes);
        return sha256Hex(bytes);
      }),
    );
    const answers = await Promise.all(Array.from({ length: 10 }, () => fetchFor(unique("did:plc:caller"), [alice])));
    const handed = answers.flatMap((answer) => answer.keyPackages.map((pkg) => pkg.keyPackageHash));
    expect(handed).toHaveLength(5);
    expect(new Set(handed)).toEqual(new Set(published));
    expect(answers.filter((answer) => answer.missing.includes(alice))).toHaveLength(5);
    expect((await storedRows(alice)).every((row) => row.handed_out_to !== null)).toBe(true);
  });

  it("answers one key package per DID, oldest first, and lists DIDs without one as missing", async () => {
    const { publish, fetchFor, clock } = client();
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const nobody = unique("did:plc:nobody");
    const oldest = await keyPackageFor(alice);
    await publish(alice, oldest);
    clock.advance(1000);
    await publish(alice, await keyPackageFor(alice));
    await publish(bob, await keyPackageFor(bob));

    const answer = await fetchFor(unique("did:plc:carol"), [nobody, alice, bob, alice]);
    expect(answer.keyPackages.map((pkg) => pkg.did)).toEqual([alice, bob]);
    expect(answer.keyPackages[0]!.keyPackageHash).toBe(await sha256Hex(oldest));
    expect(answer.missing).toEqual([nobody]);
  });

  it("never hands out an expired key package", async () => {
    const { publish, fetchFor, clock } = client();
    const alice = unique("did:plc:alice");
    await publish(alice, await keyPackageFor(alice), { hours: 1 });
    clock.advance(2 * HOUR);
    expect(await fetchFor(unique("did:plc:bob"), [alice])).toEqual({ keyPackages: [], missing: [alice] });
    expect((await storedRows(alice))[0]!.handed_out_to).toBeNull();
  });

  it("filters by cipher suite when one is given", async () => {
    const { publish, fetchFor } = client();
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const p256 = await keyPackageFor(alice, OTHER_SUITE);
    await publish(alice, await keyPackageFor(alice), { suite: SUITE });
    await publish(alice, p256, { suite: OTHER_SUITE });

    const answer = await fetchFor(bob, [alice], OTHER_SUITE);
    expect(answer.keyPackages).toEqual([
      expect.objectContaining({ cipherSuite: OTHER_SUITE, keyPackageHash: await sha256Hex(p256) }),
    ]);
    // Bob's reservation answers his repeats, with or without the suite; others get the other suite's package.
    expect((await fetchFor(bob, [alice], OTHER_SUITE)).keyPackages[0]!.keyPackageHash).toBe(await sha256Hex(p256));
    expect((await fetchFor(bob, [alice])).keyPackages[0]!.keyPackageHash).toBe(await sha256Hex(p256));
    expect((await fetchFor(unique("did:plc:carol"), [alice])).keyPackages[0]!.cipherSuite).toBe(SUITE);
    expect(await fetchFor(unique("did:plc:dave"), [alice], OTHER_SUITE)).toEqual({ keyPackages: [], missing: [alice] });
  });
});

describe("getKeyPackageStats", () => {
  it("counts only the caller's available, unexpired key packages and flips needsReplenish at the threshold", async () => {
    const { publish, stats, fetchFor, clock } = client({ KEY_PACKAGE_THRESHOLD: "3" });
    const alice = unique("did:plc:alice");
    const someoneElse = unique("did:plc:someoneelse");
    await publish(someoneElse, await keyPackageFor(someoneElse));
    expect(await stats(alice)).toEqual({ available: 0, threshold: 3, needsReplenish: true });

    await publish(alice, await keyPackageFor(alice), { hours: 1 });
    await publish(alice, await keyPackageFor(alice));
    expect(await stats(alice)).toEqual({ available: 2, threshold: 3, needsReplenish: true });
    await publish(alice, await keyPackageFor(alice, OTHER_SUITE), { suite: OTHER_SUITE });
    expect(await stats(alice)).toEqual({ available: 3, threshold: 3, needsReplenish: false });
    expect((await stats(alice, OTHER_SUITE)).available).toBe(1);

    clock.advance(2 * HOUR);
    expect(await stats(alice)).toEqual({ available: 2, threshold: 3, needsReplenish: true });
    await fetchFor(unique("did:plc:bob"), [alice], OTHER_SUITE);
    expect((await stats(alice)).available).toBe(1);
  });
});

/** The bad-input cases publish as this DID with its own real KeyPackage: only the field under test is wrong. */
const publisher = unique("did:plc:alice");
const publisherPackage = encodeBase64(await keyPackageFor(publisher));
const notMine = {
  otherDid: encodeBase64(await keyPackageFor(unique("did:plc:bob"))),
  deviceForm: encodeBase64(await keyPackageFor(`${publisher}#phone`)),
  x509: encodeBase64(
    await makeKeyPackage(publisher, undefined, {
      credential: { credentialType: "x509", certificates: [new TextEncoder().encode(publisher)] },
    }),
  ),
  notUtf8: encodeBase64(
    await makeKeyPackage(publisher, undefined, {
      credential: { credentialType: "basic", identity: new Uint8Array([0xff]) },
    }),
  ),
  welcome: encodeBase64((await makeGroupWithCommit({ memberDid: publisher })).welcomeBytes),
  opaque: encodeBase64(opaqueKeyPackage()),
};

describe("bad input", () => {
  const good = () => ({
    keyPackage: publisherPackage,
    cipherSuite: SUITE,
    expires: new Date(Date.now() + HOUR).toISOString(),
  });
  const oversize = encodeBase64(opaqueKeyPackage(64 * 1024 + 1));

  const publishCases: [string, unknown, number, string][] = [
    ["not JSON", "{", 400, "InvalidRequest"],
    ["keyPackage missing", { ...good(), keyPackage: undefined }, 400, "InvalidRequest"],
    ["keyPackage a number", { ...good(), keyPackage: 42 }, 400, "InvalidRequest"],
    ["bad base64", { ...good(), keyPackage: "not base64!" }, 400, "InvalidRequest"],
    ["bad $bytes", { ...good(), keyPackage: { $bytes: "@@@@" } }, 400, "InvalidRequest"],
    ["empty keyPackage", { ...good(), keyPackage: "" }, 400, "InvalidRequest"],
    ["oversize keyPackage", { ...good(), keyPackage: oversize }, 400, "InvalidRequest"],
    ["expires not a datetime", { ...good(), expires: "tomorrow" }, 400, "InvalidRequest"],
    ["expires a number", { ...good(), expires: Date.now() + HOUR }, 400, "InvalidRequest"],
    ["past expiry", { ...good(), expires: "2020-01-01T00:00:00Z" }, 400, "KeyPackageExpired"],
    ["unknown suite", { ...good(), cipherSuite: "MLS_1_MADE_UP" }, 400, "InvalidCipherSuite"],
    ["suite a number", { ...good(), cipherSuite: 1 }, 400, "InvalidRequest"],
    ["opaque bytes, not MLS", { ...good(), keyPackage: notMine.opaque }, 400, "InvalidKeyPackage"],
    ["a Welcome, not a KeyPackage", { ...good(), keyPackage: notMine.welcome }, 400, "InvalidKeyPackage"],
    ["credential naming another DID", { ...good(), keyPackage: notMine.otherDid }, 400, "InvalidKeyPackage"],
    [
      "credential naming a device (none registered)",
      { ...good(), keyPackage: notMine.deviceForm },
      400,
      "InvalidKeyPackage",
    ],
    ["x509 credential", { ...good(), keyPackage: notMine.x509 }, 400, "InvalidKeyPackage"],
    ["basic identity not UTF-8", { ...good(), keyPackage: notMine.notUtf8 }, 400, "InvalidKeyPackage"],
  ];
  it.each(publishCases)("publishKeyPackage: %s", async (_name, body, status, error) => {
    const res = await client().post(publisher, "publishKeyPackage", body);
    expect(res.status).toBe(status);
    expect(await res.json()).toEqual({ error, message: expect.any(String) });
    expect(await storedRows(publisher)).toEqual([]);
  });

  const batchCases: [string, unknown, number, string][] = [
    ["keyPackages missing", {}, 400, "InvalidRequest"],
    ["keyPackages not an array", { keyPackages: good() }, 400, "InvalidRequest"],
    ["empty batch", { keyPackages: [] }, 400, "InvalidRequest"],
    ["101 items", { keyPackages: Array.from({ length: 101 }, good) }, 400, "InvalidRequest"],
    ["one bad item", { keyPackages: [good(), { ...good(), keyPackage: "!" }] }, 400, "InvalidRequest"],
    [
      "one expired item",
      { keyPackages: [good(), { ...good(), expires: "2020-01-01T00:00:00Z" }] },
      400,
      "KeyPackageExpired",
    ],
    ["one unknown suite", { keyPackages: [good(), { ...good(), cipherSuite: "X" }] }, 400, "InvalidCipherSuite"],
    [
      "one item naming another DID",
      { keyPackages: [good(), { ...good(), keyPackage: notMine.otherDid }] },
      400,
      "InvalidKeyPackage",
    ],
    [
      "one item not MLS",
      { keyPackages: [good(), { ...good(), keyPackage: notMine.opaque }] },
      400,
      "InvalidKeyPackage",
    ],
  ];
  it.each(batchCases)("publishKeyPackages: %s", async (_name, body, status, error) => {
    const res = await client().post(publisher, "publishKeyPackages", body);
    expect(res.status).toBe(status);
    expect(await res.json()).toEqual({ error, message: expect.any(String) });
    expect(await storedRows(publisher)).toEqual([]);
  });

  it("refuses a batch over the body limit with 413", async () => {
    const body = { keyPackages: Array.from({ length: 40 }, () => ({ ...good(), keyPackage: oversize })) };
    const res = await client().post(publisher, "publishKeyPackages", body);
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({ error: "PayloadTooLarge", message: expect.any(String) });
  });

  const dids = (n: number) => Array.from({ length: n }, (_, i): [string, string] => ["dids", `did:plc:x${i}`]);
  const getCases: [string, [string, string][], number, string][] = [
    ["no dids", [], 400, "InvalidRequest"],
    ["101 dids", dids(101), 400, "InvalidRequest"],
    [
      "a bad DID",
      [
        ["dids", "did:plc:ok"],
        ["dids", "not-a-did"],
      ],
      400,
      "InvalidRequest",
    ],
    ["an empty DID", [["dids", ""]], 400, "InvalidRequest"],
    [
      "unknown suite",
      [
        ["dids", "did:plc:ok"],
        ["cipherSuite", "MLS_1_MADE_UP"],
      ],
      400,
      "InvalidCipherSuite",
    ],
  ];
  it.each(getCases)("getKeyPackages: %s", async (_name, params, status, error) => {
    const res = await client().get(unique("did:plc:bob"), "getKeyPackages", params);
    expect(res.status).toBe(status);
    expect(await res.json()).toEqual({ error, message: expect.any(String) });
  });

  it("getKeyPackageStats: unknown suite", async () => {
    const res = await client().get(unique("did:plc:bob"), "getKeyPackageStats", [["cipherSuite", "nope"]]);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "InvalidCipherSuite", message: expect.any(String) });
  });

  it.each([
    ["POST", "publishKeyPackage"],
    ["POST", "publishKeyPackages"],
    ["GET", "getKeyPackages?dids=did:plc:x"],
    ["GET", "getKeyPackageStats"],
  ])("%s %s without a token is 401", async (method, path) => {
    const { app } = client();
    const res = await app.request(`/xrpc/blue.catbird.mls.${path}`, {
      method,
      ...(method === "POST" && { headers: { "Content-Type": "application/json" }, body: JSON.stringify(good()) }),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "AuthenticationRequired", message: expect.any(String) });
  });
});
