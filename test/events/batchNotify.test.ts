/**
 * The NOTIFY of a send batch on real PostgreSQL: it goes out with the batch's own commit, so a batched send
 * costs its instance no NOTIFY transaction, and another instance's stream still wakes for it.
 */
import { afterAll, describe, expect, it, vi } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { CHANNEL } from "../../src/events/bus.js";
import { SEND_BATCH_SQL, storeBatch } from "../../src/services/sendBatch.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { watchingPool } from "../helpers/faults.js";
import { clientFor } from "../helpers/client.js";
import { conversation, send, stream } from "./convo.js";

const db = testDatabase();
afterAll(() => db.close());
// Only wake-ups deliver (no polls); LISTEN shows as pollMs turning to the safety poll's.
const WAKE_ONLY = { EVENTS_POLL_MS: "600000", EVENTS_SAFETY_POLL_MS: "500000", EVENTS_KEEPALIVE_MS: "600000" };

/** `db` (LISTEN included), recording every statement run on the pool. */
function recording(inner: Database) {
  const statements: string[] = [];
  return { recorded: watchingPool(inner, (sql) => statements.push(sql)), statements };
}

describe("a send batch's NOTIFY", () => {
  it("goes out with the batch's commit: another instance's stream wakes, and the writer runs no NOTIFY of its own", async () => {
    const { recorded, statements } = recording(db);
    const writer = testApp(recorded, WAKE_ONLY);
    const other = testApp(db, WAKE_ONLY);
    const { alice, bob, carol, convoId } = await conversation(writer.app);
    const far = await stream(other.app, bob, { convoId });
    const near = await stream(writer.app, carol, { convoId });
    // Both instances listen (each has a stream).
    await vi.waitFor(() => {
      expect(other.ctx.events.pollMs).toBe(500_000);
      expect(writer.ctx.events.pollMs).toBe(500_000);
    });

    statements.length = 0;
    const sent = [await send(writer.app, alice, convoId, "one"), await send(writer.app, alice, convoId, "two")];
    for (const opened of [far, near]) {
      expect((await opened.events!.take(2)).map((event) => event.data.id)).toEqual(sent.map((m) => m.messageId));
    }
    expect(statements.filter((sql) => sql.includes("pg_notify"))).toEqual([SEND_BATCH_SQL, SEND_BATCH_SQL]);

    // A write that is no send batch still notifies after its commit, in a statement of its own.
    expect((await clientFor(writer.app, alice).leaveConvo({ convoId, targetDid: carol })).status).toBe(200);
    expect((await far.events!.nextParsed())?.data).toMatchObject({ type: "removed", did: carol });
    expect(statements.filter((sql) => sql.includes("pg_notify") && sql !== SEND_BATCH_SQL)).toHaveLength(1);
    await Promise.all([far.close(), near.close()]);
  });

  it("names each conversation the batch wrote once, after the writer's origin, and the batch returns the events it wrote", async () => {
    const { app } = testApp(db);
    const [first, second] = [await conversation(app), await conversation(app)];
    const heard: string[] = [];
    const unlisten = await db.listen!(CHANNEL, (payload) => heard.push(payload));
    try {
      const origin = unique("origin-");
      const message = (convoId: string, sender: string) => ({
        message: {
          convoId,
          sender,
          senderDevice: "",
          epoch: 0,
          ciphertext: new Uint8Array([1, 2, 3]),
          messageType: "app" as const,
          opaque: true,
          now: new Date(),
        },
      });
      const items = [
        message(first.convoId, first.alice),
        message(second.convoId, second.bob),
        message(first.convoId, first.bob),
      ];
      const { events } = await storeBatch(db, items, "blue.catbird.mls.sendMessage", { channel: CHANNEL, origin });
      expect(events.map((stored) => [stored.convoId, stored.event.seq]).sort()).toEqual(
        [
          [first.convoId, 4],
          [first.convoId, 5],
          [second.convoId, 4],
        ].sort(),
      );
      await vi.waitFor(() =>
        expect(heard.filter((payload) => payload.startsWith(origin)).sort()).toEqual(
          [`${origin} ${first.convoId}`, `${origin} ${second.convoId}`].sort(),
        ),
      );
    } finally {
      await unlisten();
    }
  });
});
