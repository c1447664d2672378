/**
 * Battle tests 4 and 6: what time takes away. A server with a 2-second idempotency TTL and a 3-second welcome
 * grace period beside one with the defaults; the real clock does the waiting.
 */
import type { Client } from "mls-delivery-service/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCleanup, type CleanupResult } from "../../src/jobs/cleanup.js";
import { outcome } from "../helpers/client.js";
import { testDatabase } from "../helpers/context.js";
import { makeGroupWithCommit } from "../helpers/mls.js";
import { battleClient, sleep, utf8 } from "./calls.js";
import { createConvo, enterBattle, scalar } from "./fixtures.js";
import { battleReport, guarantee } from "./report.js";
import { start, stopAll, type BattleServer } from "./server.js";

const TTL_SECONDS = 2;
const GRACE_SECONDS = 3;
const db = testDatabase(4);
let shortServer: BattleServer | undefined;
let normalServer: BattleServer | undefined;

beforeAll(async () => {
  const [first, second] = await Promise.allSettled([
    start({ IDEMPOTENCY_TTL_SECONDS: String(TTL_SECONDS), WELCOME_GRACE_SECONDS: String(GRACE_SECONDS) }),
    start(),
  ]);
  shortServer = first.status === "fulfilled" ? first.value : undefined;
  normalServer = second.status === "fulfilled" ? second.value : undefined;
  if (first.status === "rejected") throw first.reason;
  if (second.status === "rejected") throw second.reason;
});

afterAll(async () => {
  await stopAll([shortServer, normalServer]);
  await db.close();
});

/** Sleeps until the real clock is past `moment` (plus a little, for the clocks of two processes). */
const sleepUntilPast = (moment: Date) => sleep(Math.max(0, moment.getTime() - Date.now()) + 100);

/** The cleanup run cron would do now; other test files may hold its lock for a moment, so it tries again. */
async function cleanupNow(): Promise<CleanupResult & { ran: true }> {
  for (;;) {
    const result = await runCleanup(db, {
      now: new Date(),
      welcomeGraceSeconds: 300,
      welcomeTtlSeconds: 604_800,
      retentionDays: 30,
    });
    if (result.ran) return result;
    await sleep(100);
  }
}

describe("battle: expiry", () => {
  it("4. idempotency cache TTL and cleanup: 10 entries with a 2-second TTL expire, live entries stay", async () => {
    const report = battleReport("Idempotency Cache TTL and Cleanup (10 Entries, 2-Second TTL)");
    const battle = await enterBattle(db, "ttl");
    const alice = battle.did("alice");
    const convo = await createConvo(normalServer!.url, battle, alice);
    report.log(`created conversation ${convo.name} (${convo.id})`);

    const short = battleClient(shortServer!.url, alice);
    const normal = battleClient(normalServer!.url, alice);
    const send = (client: Client, key: string) =>
      outcome(client.sendMessage({ convoId: convo.id, ciphertext: utf8(key), epoch: 0 }, { idempotencyKey: key }));
    const shortKeys = Array.from({ length: 10 }, (_, i) => `${battle.prefix}-short-${i}`);
    const liveKeys = Array.from({ length: 5 }, (_, i) => `${battle.prefix}-live-${i}`);
    const replies = await Promise.all([
      ...shortKeys.map((key) => send(short, key)),
      ...liveKeys.map((key) => send(normal, key)),
    ]);
    expect(
      replies.map((reply) => reply.status),
      guarantee("every send succeeds"),
    ).toEqual(Array(15).fill(200));

    const entries = (keys: string[]) =>
      scalar(db, `SELECT count(*) AS n FROM idempotency_keys WHERE caller_did = $1 AND key = ANY($2::text[])`, [
        alice,
        keys,
      ]);
    const [latest] = await db.query<{ expires_at: Date }>(
      `SELECT max(expires_at) AS expires_at FROM idempotency_keys WHERE caller_did = $1 AND key = ANY($2::text[])`,
      [alice, shortKeys],
    );
    const before = { short: await entries(shortKeys), live: await entries(liveKeys) };
    report.log(
      `stored ${before.short} entries with a ${TTL_SECONDS}-second TTL and ${before.live} with the default TTL`,
    );
    expect(before, guarantee("every key has its entry before cleanup")).toEqual({ short: 10, live: 5 });

    await sleepUntilPast(latest!.expires_at);
    report.log(`waited until ${latest!.expires_at.toISOString()} had passed`);
    const result = await cleanupNow();
    const after = { short: await entries(shortKeys), live: await entries(liveKeys) };
    const messages = await scalar(db, `SELECT count(*) AS n FROM messages WHERE convo_id = $1`, [convo.id]);
    report.log(
      `results: expired ${before.short - after.short}, remaining ${after.short}, live kept ${after.live}/5, ` +
        `cleanup reported ${result.idempotencyKeys} expired entries (other tests' included), messages kept ${messages}`,
    );
    expect(after.short, guarantee("0 expired entries remain after cleanup")).toBe(0);
    // The count is not asserted: other test files share this database and may run cleanup first.
    expect(after.live, guarantee("no live entry removed")).toBe(5);
    expect(messages, guarantee("cleanup of entries leaves the messages alone")).toBe(15);
    report.pass("10 expired entries removed by the cron cleanup, live entries intact");
  });

  it("6. welcome grace-period recovery: re-fetch after a crash works, after the grace period 410", async () => {
    const report = battleReport(`Welcome Grace-Period Recovery (${GRACE_SECONDS}-Second Grace)`);
    const battle = await enterBattle(db, "welcome");
    const [alice, bob] = [battle.did("alice"), battle.did("bob")];
    const welcome = new Uint8Array((await makeGroupWithCommit()).welcomeBytes);
    const convo = await createConvo(shortServer!.url, battle, alice, {
      initialMembers: [bob],
      welcomeMessage: welcome,
    });
    const asBob = battleClient(shortServer!.url, bob);
    report.log(`created conversation ${convo.name} (${convo.id}) with a welcome for bob`);
    const state = async () =>
      (
        await db.query<{ state: string; fetched_at: Date | null }>(
          `SELECT state, fetched_at FROM welcome_messages WHERE convo_id = $1 AND recipient_did = $2`,
          [convo.id, bob],
        )
      )[0];

    const first = await outcome(asBob.getWelcome({ convoId: convo.id }));
    report.log(`bob fetched the welcome: ${first.status}; the app crashes before confirmWelcome`);
    expect(first.status, guarantee("the first fetch succeeds")).toBe(200);
    expect(first.data?.welcome, guarantee("the fetch returns the stored bytes")).toEqual(welcome);
    const fetched = await state();
    expect(fetched?.state, guarantee("a fetched welcome is in flight")).toBe("in_flight");

    const again = await outcome(asBob.getWelcome({ convoId: convo.id }));
    const same = again.data !== undefined && Buffer.from(again.data.welcome).equals(welcome);
    report.log(`re-fetch within the grace period: ${again.status}, same bytes ${same}`);
    expect(again.status, guarantee("re-fetch within the grace period succeeds")).toBe(200);
    expect(again.data?.welcome, guarantee("re-fetch returns the same bytes")).toEqual(welcome);

    await sleepUntilPast(new Date(fetched!.fetched_at!.getTime() + GRACE_SECONDS * 1000));
    const gone = await outcome(asBob.getWelcome({ convoId: convo.id }));
    const final = await state();
    report.log(`re-fetch after the grace period: ${gone.status} ${gone.error}, welcome ${final?.state}`);
    expect(gone.status, guarantee("after the grace period the welcome is gone (410)")).toBe(410);
    expect(gone.error).toBe("WelcomeGone");
    expect(final?.state, guarantee("the welcome is marked expired")).toBe("expired");
    report.pass("a crashed client gets its welcome back within the grace period, and 410 after it");
  });
});
