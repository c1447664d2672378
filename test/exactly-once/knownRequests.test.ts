/**
 * Repeats of requests this process committed after their answers left memory (IDEMPOTENCY_RECENT_BYTES 0 here):
 * the same bytes read the key's record and nothing else, even while another transaction holds the key's lock;
 * other bytes, an expired key and a server that keeps none take the general path. Real
 * PostgreSQL, the app over HTTP (in process).
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { ADVISORY_LOCK } from "../../src/db/advisoryLocks.js";
import { createLogger, type LogFields } from "../../src/logger.js";
import { KnownRequests } from "../../src/middleware/knownRequests.js";
import { requestFingerprint } from "../../src/middleware/requestFingerprint.js";
import { keyLockId } from "../../src/services/idempotencyKeys.js";
import { STORED_ANSWERS_SQL, StoredAnswerReads } from "../../src/services/storedAnswerReads.js";
import { testApp, testDatabase, tokenFor } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { holdRowLock } from "../helpers/rowLock.js";
import { scrape, valueOf } from "../ops/prometheus.js";
import { keyedSend as send, soloConversation } from "./fixtures.js";

const SEND = "blue.catbird.mls.sendMessage";
const db = testDatabase(4);
afterAll(() => db.close());

describe("known requests (real PostgreSQL)", () => {
  const statements: string[] = [];
  /** Runs once, before the next read of a known request's record: what happens while that read waits. */
  let beforeRecordRead: (() => Promise<void>) | undefined;
  const counted = withStatementHook(db, async (sql) => {
    statements.push(sql);
    if (!beforeRecordRead || !sql.startsWith(STORED_ANSWERS_SQL)) return;
    const run = beforeRecordRead;
    beforeRecordRead = undefined;
    await run();
  });
  const clock = new ManualClock();
  const env = { IDEMPOTENCY_TTL_SECONDS: "60", IDEMPOTENCY_RECENT_BYTES: "0", IDEMPOTENCY_WAIT_MS: "300" };
  const warnings: LogFields[] = [];
  const logger = createLogger("warn", (line) => warnings.push(JSON.parse(line) as LogFields));
  const { app } = testApp(counted, env, clock, logger);
  const readFailures = async () => valueOf((await scrape(app)).samples, "idempotency_key_read_failures_total");

  const conversation = () => soloConversation(app, "did:plc:known");

  it("answers a byte-for-byte repeat with one read of its record, the same answer", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k1");
    expect(first.status).toBe(200);
    statements.length = 0;
    const repeat = await send(app, alice, convoId, "k1");
    expect(statements).toHaveLength(1);
    expect(statements[0]!.startsWith(STORED_ANSWERS_SQL)).toBe(true);
    expect(repeat.status).toBe(200);
    expect(repeat.data && repeat.replayed).toBe(true);
    expect(repeat.data).toEqual(first.data);
  });

  it("reads the records of concurrent repeats together, each its own answer", async () => {
    const { alice, convoId } = await conversation();
    const keys = Array.from({ length: 20 }, (_, n) => `batch${n}`);
    const firsts = await Promise.all(keys.map((key, n) => send(app, alice, convoId, key, new Uint8Array([n + 1]))));
    statements.length = 0;
    const repeats = await Promise.all(keys.map((key, n) => send(app, alice, convoId, key, new Uint8Array([n + 1]))));
    expect(repeats.map((repeat) => repeat.data && repeat.replayed)).toEqual(keys.map(() => true));
    expect(repeats.map((repeat) => repeat.data)).toEqual(firsts.map((first) => first.data));
    // Only record reads, and fewer statements than repeats: one starts at once, the rest wait for it together.
    expect(statements.every((sql) => sql === STORED_ANSWERS_SQL)).toBe(true);
    expect(statements.length).toBeLessThan(keys.length);
  });

  it("answers by the general path when the read's statement fails, and reads nothing for a request past its deadline", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k7");
    beforeRecordRead = async () => {
      throw new Error("connection lost");
    };
    const failuresBefore = await readFailures();
    statements.length = 0;
    warnings.length = 0;
    const repeat = await send(app, alice, convoId, "k7");
    expect(repeat.data && repeat.replayed).toBe(true);
    expect(repeat.data).toEqual(first.data);
    // The read was attempted (and failed), then the general path answered; the failure is counted and logged.
    const failedReads = statements.filter((sql) => sql === STORED_ANSWERS_SQL).length;
    expect(failedReads).toBe(1);
    expect(statements.filter((sql) => sql !== STORED_ANSWERS_SQL).length).toBeGreaterThan(0);
    expect(await readFailures()).toBe((failuresBefore ?? 0) + failedReads);
    expect(warnings.map(({ message, error, reads }) => ({ message, error, reads }))).toEqual([
      { message: "reading known requests' records failed", error: "Error: connection lost", reads: 1 },
    ]);

    statements.length = 0;
    const reads = new StoredAnswerReads({ db: counted, logger, observeFailure: () => {} });
    const [caller, expiresAt] = [alice, new Date(clock.now().getTime() + 60_000)];
    await expect(reads.read([caller, SEND, "k7"], expiresAt, () => true)).resolves.toBeUndefined();
    expect(statements).toEqual([]);
  });

  it("takes the general path for other bytes: the same request reordered replays, another one is 422", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k2");
    const token = await tokenFor(alice);
    const raw = (body: string) =>
      app.request(`/xrpc/${SEND}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Idempotency-Key": "k2" },
        body,
      });
    statements.length = 0;
    const reordered = await raw(JSON.stringify({ epoch: 0, ciphertext: { $bytes: "AQID" }, convoId }));
    expect(reordered.status).toBe(200);
    expect(reordered.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await reordered.json()).toEqual(first.data);
    expect(statements.some((sql) => sql.startsWith(STORED_ANSWERS_SQL))).toBe(false);

    const other = await send(app, alice, convoId, "k2", new Uint8Array([4, 5, 6]));
    expect([other.status, other.error]).toEqual([422, "IdempotencyKeyReused"]);
  });

  it("answers while another transaction holds the key's lock (a committed record no one can change before it expires)", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k3");
    const lock = holdRowLock(db, `SELECT pg_advisory_xact_lock($1, ${keyLockId("$2::text", "$3::text", "$4::text")})`, [
      ADVISORY_LOCK.idempotencyKey,
      alice,
      SEND,
      "k3",
    ]);
    try {
      await lock.held;
      statements.length = 0;
      const repeat = await send(app, alice, convoId, "k3");
      expect(repeat.data && repeat.replayed).toBe(true);
      expect(repeat.data).toEqual(first.data);
      expect(statements).toHaveLength(1);
    } finally {
      lock.release();
      await lock.done;
    }
  });

  it("never answers with a later record of the key: one taken over while the read waited is not this request's", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k6");
    expect(first.status).toBe(200);
    clock.advance(58_000);
    let takenOver: Awaited<ReturnType<typeof send>> | undefined;
    beforeRecordRead = async () => {
      // The record expires while the retry's read waits (a busy pool), and another request takes the key over.
      clock.advance(3_000);
      takenOver = await send(app, alice, convoId, "k6", new Uint8Array([9, 9, 9]));
    };
    const retry = await send(app, alice, convoId, "k6");
    expect(takenOver?.status).toBe(200);
    expect(takenOver?.data?.messageId).not.toBe(first.data?.messageId);
    // The general path finds the key holding another request: 422, not the other request's answer.
    expect([retry.status, retry.error]).toEqual([422, "IdempotencyKeyReused"]);
  });

  it("keeps nothing past the key's expiry: the key is a new action then", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k4");
    clock.advance(61_000);
    const later = await send(app, alice, convoId, "k4");
    expect(later.status).toBe(200);
    expect(later.data && later.replayed).toBe(false);
    expect(later.data?.messageId).not.toBe(first.data?.messageId);
  });

  it("with IDEMPOTENCY_KNOWN_REQUESTS=0, a repeat takes the general path", async () => {
    const { app: forgetful } = testApp(counted, { ...env, IDEMPOTENCY_KNOWN_REQUESTS: "0" }, clock);
    const { alice, convoId } = await conversation();
    const first = await send(forgetful, alice, convoId, "k5");
    statements.length = 0;
    const repeat = await send(forgetful, alice, convoId, "k5");
    expect(repeat.data).toEqual(first.data);
    expect(statements.some((sql) => sql.startsWith(STORED_ANSWERS_SQL))).toBe(false);
  });
});

describe("KnownRequests", () => {
  const id = (key: string, body = "{}") => requestFingerprint(["did:plc:a", SEND, key], body);
  const now = new Date("2026-01-01T00:00:00Z");
  const later = new Date(now.getTime() + 60_500);

  it("knows a request by its scope and its exact body until its record's expiry, and gives that expiry", () => {
    const known = new KnownRequests(10);
    expect(known.empty).toBe(true);
    known.add(id("k", '{"a":1}'), later);
    expect(known.empty).toBe(false);
    expect(known.expiryOf(id("k", '{"a":1}'), now)).toEqual(later);
    expect(known.expiryOf(id("k", '{"a": 1}'), now)).toBeUndefined();
    expect(known.expiryOf(requestFingerprint(["did:plc:b", SEND, "k"], '{"a":1}'), now)).toBeUndefined();
    expect(known.expiryOf(id("k", '{"a":1}'), new Date(later.getTime() - 1))).toEqual(later);
    expect(known.expiryOf(id("k", '{"a":1}'), later)).toBeUndefined();
    // Added again (a new record of the key): the new expiry.
    const again = new Date(later.getTime() + 60_000);
    known.add(id("k", '{"a":1}'), again);
    expect(known.expiryOf(id("k", '{"a":1}'), later)).toEqual(again);
  });

  it("holds at most its capacity, forgetting the oldest first", () => {
    const known = new KnownRequests(3);
    for (const key of ["k1", "k2", "k3", "k1", "k4", "k5"]) known.add(id(key), later);
    const kept = ["k1", "k2", "k3", "k4", "k5"].filter((key) => known.expiryOf(id(key), now));
    expect(kept).toEqual(["k3", "k4", "k5"]);
  });

  it("agrees with a plain model over many adds, re-adds and lookups (its index survives every eviction)", () => {
    const capacity = 64;
    const known = new KnownRequests(capacity);
    // The model: fingerprints by key in the order first added, each with its latest expiry.
    const model = new Map<string, number>();
    let seed = 42;
    const random = (below: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % below;
    };
    for (let step = 0; step < 20_000; step++) {
      const key = `k${random(300)}`;
      if (random(3) === 0) {
        const expected = model.get(key);
        expect(known.expiryOf(id(key), now)?.getTime()).toBe(expected);
        continue;
      }
      const expiry = now.getTime() + 1 + random(1_000_000);
      if (!model.has(key) && model.size === capacity) model.delete(model.keys().next().value!);
      model.set(key, expiry);
      known.add(id(key), new Date(expiry));
    }
    for (let n = 0; n < 300; n++) expect(known.expiryOf(id(`k${n}`), now)?.getTime()).toBe(model.get(`k${n}`));
  });
});
