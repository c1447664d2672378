/**
 * A batch of sends never waits for another transaction: a conversation held elsewhere is stored by a statement
 * of its own that waits for it. Two processes (two apps, two coalescers) racing on one key while the
 * conversation is locked both get the one answer, and one message is stored.
 */
import { afterAll, describe, expect, it } from "vitest";
import { DatabaseError } from "../../src/db/driver.js";
import { SEND_BATCH_SQL } from "../../src/services/sendBatch.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { conversationLockWaiters, holdConversationRow } from "../helpers/rowLock.js";
import { withStatementHook } from "../helpers/faults.js";
import { xrpc } from "../helpers/xrpc.js";
import { keyedSend, messageCount, soloConversation } from "./fixtures.js";

describe("same-key sends from two processes while the conversation is held (real PostgreSQL)", () => {
  const db = testDatabase(10);
  afterAll(() => db.close());

  it("both wait for the conversation, then one stores the message and the other answers its repeat", async () => {
    const env = { IDEMPOTENCY_WAIT_MS: "30000" };
    const { app: first } = testApp(db, env);
    const { app: second } = testApp(db, env);
    const { alice, convoId } = await soloConversation(first, "did:plc:idemrace");
    const send = (app: typeof first) => keyedSend(app, alice, convoId, "race");

    const holder = await holdConversationRow(db, convoId);
    const { ctid } = holder;
    // Each process's batch skips the held conversation; each stores the send by a statement that waits for the row.
    const sends = [send(first), send(second)];
    await conversationLockWaiters(db, ctid, 2);
    holder.release();
    await holder.done;

    const answers = await Promise.all(sends);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    expect(answers[0]!.data).toEqual(answers[1]!.data);
    expect(answers.map((r) => r.data && r.replayed).sort()).toEqual([false, true]);
    expect(await messageCount(db, convoId)).toBe(1);
  });

  it("a batch rolled back by a deadlock takes the general path instead of answering 503", async () => {
    let refused = 0;
    const deadlocked = withStatementHook(db, async (sql) => {
      if (sql === SEND_BATCH_SQL && ++refused) throw new DatabaseError("injected deadlock", "40P01", undefined);
    });
    const { app } = testApp(deadlocked);
    const { alice, convoId } = await soloConversation(app, "did:plc:idemdeadlock");
    const sent = await keyedSend(app, alice, convoId, "victim");
    expect(sent.status).toBe(200);
    const replay = await keyedSend(app, alice, convoId, "victim");
    expect(replay.data && replay.replayed).toBe(true);
    expect(replay.data).toEqual(sent.data);
    // Raw: a send without an Idempotency-Key (the client gives every send one).
    const unkeyed = await xrpc(app, alice, "sendMessage", { body: { convoId, ciphertext: "AQID", epoch: 0 } });
    expect(unkeyed.status).toBe(200);
    // Both first sends tried a batch first; the replay was answered from what this process committed.
    expect(refused).toBe(2);
  });
});
