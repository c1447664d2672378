/**
 * Repeats of requests this process committed after their answers left memory (IDEMPOTENCY_RECENT_BYTES 0 here):
 * the same bytes read the key's record and nothing else, even while another transaction holds the key's lock;
 * other bytes, an expired key and a server that keeps none take the general path. Real
 * PostgreSQL, the app over HTTP (in process).
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { ADVISORY_LOCK } from "../../src/db/advisoryLocks.js";
import { KnownRequests } from "../../src/middleware/knownRequests.js";
import { keyLockId } from "../../src/services/idempotencyKeys.js";
import { randomGroupId, testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { clientFor, outcome } from "../helpers/client.js";
import { holdRowLock } from "../helpers/rowLock.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const SEND = "blue.catbird.mls.sendMessage";
const db = testDatabase(4);
afterAll(() => db.close());

describe("known requests (real PostgreSQL)", () => {
  const statements: string[] = [];
  const counted = withStatementHook(db, async (sql) => void statements.push(sql));
  const clock = new ManualClock();
  const env = { IDEMPOTENCY_TTL_SECONDS: "60", IDEMPOTENCY_RECENT_BYTES: "0", IDEMPOTENCY_WAIT_MS: "300" };
  const { app } = testApp(counted, env, clock);
  type App = typeof app;

  const send = (on: App, did: string, convoId: string, key: string, ciphertext = new Uint8Array([1, 2, 3])) =>
    outcome(clientFor(on, did).sendMessage({ convoId, ciphertext, epoch: 0 }, { idempotencyKey: key }));

  async function conversation() {
    const alice = unique("did:plc:known");
    const created = await clientFor(app, alice).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
    expect(created.status).toBe(200);
    return { alice, convoId: created.data.id };
  }

  it("answers a byte-for-byte repeat with one read of its record, the same answer", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k1");
    expect(first.status).toBe(200);
    statements.length = 0;
    const repeat = await send(app, alice, convoId, "k1");
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatch(/^SELECT request_hash, status_code, response/);
    expect(repeat.status).toBe(200);
    expect(repeat.data && repeat.replayed).toBe(true);
    expect(repeat.data).toEqual(first.data);
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
    expect(statements.some((sql) => sql.startsWith("SELECT request_hash, status_code, response"))).toBe(false);

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
    expect(statements.some((sql) => sql.startsWith("SELECT request_hash, status_code, response"))).toBe(false);
  });
});

describe("KnownRequests", () => {
  const scope = (key: string) => ["did:plc:a", SEND, key] as const;
  const now = new Date("2026-01-01T00:00:00Z");
  const later = new Date(now.getTime() + 60_000);

  it("knows a request by its scope and its exact body until its record's expiry", () => {
    const known = new KnownRequests(10);
    known.add(scope("k"), '{"a":1}', later);
    expect(known.has(scope("k"), '{"a":1}', now)).toBe(true);
    expect(known.has(scope("k"), '{"a": 1}', now)).toBe(false);
    expect(known.has(["did:plc:b", SEND, "k"], '{"a":1}', now)).toBe(false);
    expect(known.has(scope("k"), '{"a":1}', new Date(later.getTime() - 1))).toBe(true);
    expect(known.has(scope("k"), '{"a":1}', later)).toBe(false);
    // Forgotten once seen expired.
    expect(known.has(scope("k"), '{"a":1}', now)).toBe(false);
    // An expiry within a second counts from the second before it: gone a little early, never late.
    known.add(scope("k"), '{"a":1}', new Date(later.getTime() + 999));
    expect(known.has(scope("k"), '{"a":1}', later)).toBe(false);
  });

  it("holds at most its bound, forgetting the oldest first", () => {
    const known = new KnownRequests(2);
    for (const key of ["k1", "k2", "k3"]) known.add(scope(key), "{}", later);
    expect(["k1", "k2", "k3"].map((key) => known.has(scope(key), "{}", now))).toEqual([false, true, true]);
  });
});
