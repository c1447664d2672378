import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeBase64 } from "../../src/bytes.js";
import { ManualClock } from "../../src/clock.js";
import type { Database } from "../../src/db/driver.js";
import { runCleanup } from "../../src/jobs/cleanup.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage } from "../helpers/mls.js";
import { migratedPglite } from "../helpers/pglite.js";
import { xrpc } from "../helpers/xrpc.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
let WELCOME: string;
beforeAll(async () => {
  WELCOME = encodeBase64((await makeGroupWithCommit()).welcomeBytes);
});
const GRACE_SECONDS = 300;

const drivers: { name: string; open: () => Promise<Database> }[] = [
  { name: "postgres.js on real PostgreSQL", open: async () => testDatabase(10) },
  { name: "PGlite", open: migratedPglite },
];

describe.each(drivers)("welcome two-phase commit ($name)", ({ open }) => {
  let db: Database;
  beforeAll(async () => {
    db = await open();
  });
  afterAll(() => db.close());

  /** Alice creates a conversation with Bob and a welcome built from Bob's published key package. */
  async function invite() {
    const clock = new ManualClock();
    const { app } = testApp(db, { WELCOME_GRACE_SECONDS: String(GRACE_SECONDS) }, clock);
    const alice = unique("did:plc:walice");
    const bob = unique("did:plc:wbob");
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const published = await xrpc(app, bob, "publishKeyPackage", {
      body: { keyPackage: encodeBase64(await makeKeyPackage(bob)), cipherSuite: SUITE, expires },
    });
    expect(published.status).toBe(200);
    const [{ hash } = { hash: "" }] = await db.query<{ hash: string }>(`SELECT hash FROM key_packages WHERE owner_did = $1`, [bob]);
    const created = await xrpc(app, alice, "createConvo", {
      body: {
        groupId: randomGroupId(),
        cipherSuite: SUITE,
        initialMembers: [bob],
        welcomeMessage: WELCOME,
        keyPackageHashes: [{ did: bob, hash }],
      },
    });
    expect(created.status).toBe(200);
    return { app, clock, alice, bob, convoId: created.body.id as string, hash };
  }

  const welcomeRows = (convoId: string) =>
    db.query<{ state: string; error_details: string | null }>(
      `SELECT state, error_details FROM welcome_messages WHERE convo_id = $1`,
      [convoId],
    );
  const keyPackageConsumed = async (owner: string) =>
    (await db.query<{ consumed_at: Date | null }>(`SELECT consumed_at FROM key_packages WHERE owner_did = $1`, [owner]))[0]
      ?.consumed_at !== null;

  it("fetch, crash, re-fetch within grace gives the same bytes; confirm consumes; then 410", async () => {
    const { app, clock, bob, convoId } = await invite();
    const first = await xrpc(app, bob, "getWelcome", { query: { convoId } });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ convoId, welcome: { $bytes: WELCOME } });
    expect(await welcomeRows(convoId)).toEqual([{ state: "in_flight", error_details: null }]);

    clock.advance((GRACE_SECONDS - 10) * 1000);
    const again = await xrpc(app, bob, "getWelcome", { query: { convoId } });
    expect(again.body).toEqual(first.body);

    const confirmed = await xrpc(app, bob, "confirmWelcome", { body: { convoId, success: true } });
    expect(confirmed).toMatchObject({ status: 200, body: { confirmed: true } });
    expect(await welcomeRows(convoId)).toEqual([{ state: "consumed", error_details: null }]);
    expect(await keyPackageConsumed(bob)).toBe(true);

    expect((await xrpc(app, bob, "confirmWelcome", { body: { convoId, success: true } })).status).toBe(200);
    const gone = await xrpc(app, bob, "getWelcome", { query: { convoId } });
    expect(gone.status).toBe(410);
    expect(gone.body.error).toBe("WelcomeGone");
  });

  it("after the grace period the welcome is gone (410) and its key package consumed", async () => {
    const { app, clock, bob, convoId } = await invite();
    expect((await xrpc(app, bob, "getWelcome", { query: { convoId } })).status).toBe(200);
    expect(await keyPackageConsumed(bob)).toBe(false);
    clock.advance((GRACE_SECONDS + 1) * 1000);
    const gone = await xrpc(app, bob, "getWelcome", { query: { convoId } });
    expect(gone.status).toBe(410);
    expect(await welcomeRows(convoId)).toEqual([{ state: "expired", error_details: null }]);
    expect(await keyPackageConsumed(bob)).toBe(true);
  });

  it("a failed confirm records the details and leaves the welcome fetchable until grace ends", async () => {
    const { app, bob, convoId } = await invite();
    await xrpc(app, bob, "getWelcome", { query: { convoId } });
    const failed = await xrpc(app, bob, "confirmWelcome", { body: { convoId, success: false, errorDetails: "bad tree" } });
    expect(failed).toMatchObject({ status: 200, body: { confirmed: false } });
    expect(await welcomeRows(convoId)).toEqual([{ state: "in_flight", error_details: "bad tree" }]);
    expect((await xrpc(app, bob, "getWelcome", { query: { convoId } })).status).toBe(200);
    const tooLong = await xrpc(app, bob, "confirmWelcome", { body: { convoId, success: false, errorDetails: "x".repeat(1025) } });
    expect(tooLong.status).toBe(400);
  });

  it("50 concurrent fetches return the same welcome and leave one in-flight row", async () => {
    const { app, bob, convoId } = await invite();
    const responses = await Promise.all(Array.from({ length: 50 }, () => xrpc(app, bob, "getWelcome", { query: { convoId } })));
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(new Set(responses.map((r) => r.body.welcome.$bytes))).toEqual(new Set([WELCOME]));
    expect(await welcomeRows(convoId)).toEqual([{ state: "in_flight", error_details: null }]);
  });

  it("only the recipient gets a welcome: a member without one 404, a stranger 403, no token 401", async () => {
    const { app, alice, convoId } = await invite();
    expect((await xrpc(app, alice, "getWelcome", { query: { convoId } })).body.error).toBe("WelcomeNotFound");
    expect((await xrpc(app, alice, "confirmWelcome", { body: { convoId, success: true } })).status).toBe(404);
    const stranger = unique("did:plc:wstranger");
    expect((await xrpc(app, stranger, "getWelcome", { query: { convoId } })).status).toBe(403);
    expect((await xrpc(app, stranger, "confirmWelcome", { body: { convoId, success: true } })).status).toBe(403);
    expect((await xrpc(app, undefined, "getWelcome", { query: { convoId } })).status).toBe(401);
    expect((await xrpc(app, alice, "getWelcome", { query: { convoId: "no-such-convo" } })).status).toBe(404);
  });

  it("cleanup expires in-flight welcomes past grace and leaves live ones", async () => {
    const stale = await invite();
    const live = await invite();
    await xrpc(stale.app, stale.bob, "getWelcome", { query: { convoId: stale.convoId } });
    await xrpc(live.app, live.bob, "getWelcome", { query: { convoId: live.convoId } });
    const now = new Date(Date.now() + (GRACE_SECONDS + 5) * 1000);
    live.clock.advance((GRACE_SECONDS + 10) * 1000);
    await xrpc(live.app, live.bob, "getWelcome", { query: { convoId: live.convoId } }); // 410, but it was fetched before: expired now
    const freshLive = await invite();
    await xrpc(freshLive.app, freshLive.bob, "getWelcome", { query: { convoId: freshLive.convoId } });
    const result = await runCleanup(db, { now, welcomeGraceSeconds: GRACE_SECONDS, welcomeTtlSeconds: 604_800, retentionDays: 30 });
    expect(result.ran && result.welcomesExpired).toBeGreaterThanOrEqual(1);
    expect(await welcomeRows(stale.convoId)).toEqual([{ state: "expired", error_details: null }]);
    expect(await keyPackageConsumed(stale.bob)).toBe(true);
    // fetched at real time, grace counted from then: `now` is past it too, so it expired as well
    expect((await welcomeRows(freshLive.convoId))[0]?.state).toBe("expired");
    const untouched = await invite();
    expect(await welcomeRows(untouched.convoId)).toEqual([{ state: "available", error_details: null }]);
  });
});
