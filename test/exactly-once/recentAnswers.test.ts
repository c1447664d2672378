/**
 * Repeats answered from what this process committed: no statement, the same bytes, a different request
 * still refused (422), nothing kept past the key's expiry, and a key answered by another process still
 * replayed from the database. Real PostgreSQL, the app over HTTP (in process).
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { keyedSend as send, soloConversation } from "./fixtures.js";

const db = testDatabase(4);
afterAll(() => db.close());

describe("recent answers (real PostgreSQL)", () => {
  const statements: string[] = [];
  const counted = withStatementHook(db, async (sql) => void statements.push(sql));
  const clock = new ManualClock();
  const env = { IDEMPOTENCY_TTL_SECONDS: "60" };
  const { app } = testApp(counted, env, clock);

  const conversation = () => soloConversation(app, "did:plc:recent");

  it("answers a repeat of its own committed answer without a statement, byte for byte", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k1");
    statements.length = 0;
    const repeat = await send(app, alice, convoId, "k1");
    expect(statements).toEqual([]);
    expect(repeat.status).toBe(200);
    expect(repeat.data && repeat.replayed).toBe(true);
    expect(repeat.data).toEqual(first.data);

    const other = await send(app, alice, convoId, "k1", new Uint8Array([4, 5, 6]));
    expect([other.status, other.error]).toEqual([422, "IdempotencyKeyReused"]);
    expect(statements).toEqual([]);
  });

  it("keeps nothing past the key's expiry: the key is a new action then", async () => {
    const { alice, convoId } = await conversation();
    const first = await send(app, alice, convoId, "k2");
    clock.advance(61_000);
    const later = await send(app, alice, convoId, "k2");
    expect(later.status).toBe(200);
    expect(later.data && later.replayed).toBe(false);
    expect(later.data?.messageId).not.toBe(first.data?.messageId);
  });

  it("replays a key another process answered from the database", async () => {
    const { alice, convoId } = await conversation();
    const { app: other } = testApp(db, env, clock);
    const first = await send(other, alice, convoId, "k3");
    statements.length = 0;
    const repeat = await send(app, alice, convoId, "k3");
    expect(repeat.data && repeat.replayed).toBe(true);
    expect(repeat.data).toEqual(first.data);
    expect(statements.length).toBeGreaterThan(0);
  });
});
