import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import type { Database } from "../../src/db/driver.js";
import { runCleanup } from "../../src/jobs/cleanup.js";
import { randomGroupId, testApp, unique } from "../helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage } from "../helpers/mls.js";
import { migratedPglite } from "../helpers/pglite.js";
import { ownDatabase } from "../helpers/upgrade.js";
import { clientFor, outcome } from "../helpers/client.js";
import { xrpc } from "../helpers/xrpc.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
let WELCOME: Uint8Array;
beforeAll(async () => {
  WELCOME = (await makeGroupWithCommit()).welcomeBytes;
});
const GRACE_SECONDS = 300;

const drivers: { name: string; open: () => Promise<Database> }[] = [
  // A database of its own: the cleanup test below runs with a clock past the grace period, and on the shared
  // database it would expire the in-flight welcomes of every other file running meanwhile.
  { name: "postgres.js on real PostgreSQL", open: ownDatabase },
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
    const published = await clientFor(app, bob).publishKeyPackage({
      keyPackage: await makeKeyPackage(bob),
      cipherSuite: SUITE,
      expires,
    });
    expect(published.status).toBe(200);
    const [{ hash } = { hash: "" }] = await db.query<{ hash: string }>(
      `SELECT hash FROM key_packages WHERE owner_did = $1`,
      [bob],
    );
    const created = await clientFor(app, alice).createConvo({
      groupId: randomGroupId(),
      cipherSuite: SUITE,
      initialMembers: [bob],
      welcomeMessage: WELCOME,
      keyPackageHashes: [{ did: bob, hash }],
    });
    expect(created.status).toBe(200);
    return { app, clock, alice, bob, convoId: created.data.id, hash };
  }

  const welcomeRows = (convoId: string) =>
    db.query<{ state: string; error_details: string | null }>(
      `SELECT state, error_details FROM welcome_messages WHERE convo_id = $1`,
      [convoId],
    );
  const keyPackageConsumed = async (owner: string) =>
    (
      await db.query<{ consumed_at: Date | null }>(`SELECT consumed_at FROM key_packages WHERE owner_did = $1`, [owner])
    )[0]?.consumed_at !== null;

  it("fetch, crash, re-fetch within grace gives the same bytes; confirm consumes; then 410", async () => {
    const { app, clock, bob, convoId } = await invite();
    const client = clientFor(app, bob);
    const first = await client.getWelcome({ convoId });
    expect(first.status).toBe(200);
    expect(first.data).toEqual({ convoId, welcome: WELCOME });
    expect(await welcomeRows(convoId)).toEqual([{ state: "in_flight", error_details: null }]);

    clock.advance((GRACE_SECONDS - 10) * 1000);
    const again = await client.getWelcome({ convoId });
    expect(again.data).toEqual(first.data);

    const confirmed = await client.confirmWelcome({ convoId, success: true });
    expect(confirmed).toMatchObject({ status: 200, data: { confirmed: true } });
    expect(await welcomeRows(convoId)).toEqual([{ state: "consumed", error_details: null }]);
    expect(await keyPackageConsumed(bob)).toBe(true);

    expect((await client.confirmWelcome({ convoId, success: true })).status).toBe(200);
    const gone = await outcome(client.getWelcome({ convoId }));
    expect(gone.status).toBe(410);
    expect(gone.error).toBe("WelcomeGone");
  });

  it("after the grace period the welcome is gone (410) and its key package consumed", async () => {
    const { app, clock, bob, convoId } = await invite();
    const client = clientFor(app, bob);
    expect((await client.getWelcome({ convoId })).status).toBe(200);
    expect(await keyPackageConsumed(bob)).toBe(false);
    clock.advance((GRACE_SECONDS + 1) * 1000);
    const gone = await outcome(client.getWelcome({ convoId }));
    expect(gone.status).toBe(410);
    expect(await welcomeRows(convoId)).toEqual([{ state: "expired", error_details: null }]);
    expect(await keyPackageConsumed(bob)).toBe(true);
  });

  it("a failed confirm records the details and leaves the welcome fetchable until grace ends", async () => {
    const { app, bob, convoId } = await invite();
    const client = clientFor(app, bob);
    await client.getWelcome({ convoId });
    const failed = await client.confirmWelcome({ convoId, success: false, errorDetails: "bad tree" });
    expect(failed).toMatchObject({ status: 200, data: { confirmed: false } });
    expect(await welcomeRows(convoId)).toEqual([{ state: "in_flight", error_details: "bad tree" }]);
    expect((await client.getWelcome({ convoId })).status).toBe(200);
    // Raw: details longer than the schema allows (malformed input).
    const tooLong = await xrpc(app, bob, "confirmWelcome", {
      body: { convoId, success: false, errorDetails: "x".repeat(1025) },
    });
    expect(tooLong.status).toBe(400);
  });

  it("50 concurrent fetches return the same welcome and leave one in-flight row", async () => {
    const { app, bob, convoId } = await invite();
    const client = clientFor(app, bob);
    const responses = await Promise.all(Array.from({ length: 50 }, () => outcome(client.getWelcome({ convoId }))));
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    for (const response of responses) expect(response.data?.welcome).toEqual(WELCOME);
    expect(await welcomeRows(convoId)).toEqual([{ state: "in_flight", error_details: null }]);
  });

  it("only the recipient gets a welcome: a member without one 404, a stranger 403, no token 401", async () => {
    const { app, alice, convoId } = await invite();
    const member = clientFor(app, alice);
    expect((await outcome(member.getWelcome({ convoId }))).error).toBe("WelcomeNotFound");
    expect((await outcome(member.confirmWelcome({ convoId, success: true }))).status).toBe(404);
    const stranger = clientFor(app, unique("did:plc:wstranger"));
    expect((await outcome(stranger.getWelcome({ convoId }))).status).toBe(403);
    expect((await outcome(stranger.confirmWelcome({ convoId, success: true }))).status).toBe(403);
    expect((await outcome(clientFor(app, null).getWelcome({ convoId }))).status).toBe(401);
    expect((await outcome(member.getWelcome({ convoId: "no-such-convo" }))).status).toBe(404);
  });

  it("cleanup expires in-flight welcomes past grace and leaves live ones", async () => {
    const stale = await invite();
    const live = await invite();
    const getWelcome = ({ app, bob, convoId }: typeof stale) => outcome(clientFor(app, bob).getWelcome({ convoId }));
    await getWelcome(stale);
    await getWelcome(live);
    const now = new Date(Date.now() + (GRACE_SECONDS + 5) * 1000);
    live.clock.advance((GRACE_SECONDS + 10) * 1000);
    await getWelcome(live); // 410, but it was fetched before: expired now
    const freshLive = await invite();
    await getWelcome(freshLive);
    const result = await runCleanup(db, {
      now,
      welcomeGraceSeconds: GRACE_SECONDS,
      welcomeTtlSeconds: 604_800,
      retentionDays: 30,
    });
    expect(result.ran && result.welcomesExpired).toBeGreaterThanOrEqual(1);
    expect(await welcomeRows(stale.convoId)).toEqual([{ state: "expired", error_details: null }]);
    expect(await keyPackageConsumed(stale.bob)).toBe(true);
    // fetched at real time, grace counted from then: `now` is past it too, so it expired as well
    expect((await welcomeRows(freshLive.convoId))[0]?.state).toBe("expired");
    const untouched = await invite();
    expect(await welcomeRows(untouched.convoId)).toEqual([{ state: "available", error_details: null }]);
  });
});
