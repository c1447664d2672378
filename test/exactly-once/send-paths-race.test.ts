/**
 * The one-statement keyed send and the general path racing on one key while the conversation is
 * locked: whatever order the database grants the locks in, both requests get the one answer.
 */
import { afterAll, describe, expect, it } from "vitest";
import { DatabaseError } from "../../src/db/driver.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { conversationLockWaiters, holdRowLock } from "../helpers/rowLock.js";
import { withStatementHook } from "../helpers/faults.js";
import { xrpc } from "../helpers/xrpc.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

describe("same-key sends on the two paths (real PostgreSQL)", () => {
  const db = testDatabase(10);
  afterAll(() => db.close());

  it("a one-statement send holding the conversation and a general-path send holding the key: one message, one answer", async () => {
    const env = { IDEMPOTENCY_WAIT_MS: "30000" };
    const { app } = testApp(db, env);
    // The general path, as taken when the one-statement send waited on the conversation past the wait limit.
    const general = withStatementHook(db, async (sql) => {
      if (sql.includes("existing AS")) throw new DatabaseError("injected lock timeout", "55P03", undefined);
    });
    const { app: generalApp } = testApp(general, env);
    const alice = unique("did:plc:idemrace");
    const created = await xrpc(app, alice, "createConvo", { body: { groupId: randomGroupId(), cipherSuite: SUITE } });
    const convoId = created.body.id as string;
    const request = { body: { convoId, ciphertext: "AQID", epoch: 0 }, headers: { "Idempotency-Key": "race" } };

    const holder = holdRowLock<{ ctid: string }>(db, `SELECT ctid::text FROM conversations WHERE id = $1 FOR UPDATE`, [
      convoId,
    ]);
    const ctid = (await holder.held)[0]!.ctid;
    // First in line for the conversation: the one-statement send, which claims the key after locking it.
    const once = xrpc(app, alice, "sendMessage", request);
    await conversationLockWaiters(db, ctid, 1);
    // Second in line: the general path, which holds the key while it waits for the conversation.
    const claimed = xrpc(generalApp, alice, "sendMessage", request);
    await conversationLockWaiters(db, ctid, 2);
    holder.release();
    await holder.done;

    const answers = await Promise.all([once, claimed]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    expect(answers[0]!.body).toEqual(answers[1]!.body);
    expect(answers.filter((r) => r.headers.get("Idempotent-Replayed") === "true")).toHaveLength(1);
    const [row] = await db.query<{ messages: number }>(
      `SELECT count(*) AS messages FROM messages WHERE convo_id = $1`,
      [convoId],
    );
    expect(row!.messages).toBe(1);
  });

  it("a one-statement send rolled back by a deadlock takes the general path instead of answering 503", async () => {
    const deadlocked = withStatementHook(db, async (sql) => {
      if (sql.includes("existing AS")) throw new DatabaseError("injected deadlock", "40P01", undefined);
    });
    const { app } = testApp(deadlocked);
    const alice = unique("did:plc:idemdeadlock");
    const created = await xrpc(app, alice, "createConvo", { body: { groupId: randomGroupId(), cipherSuite: SUITE } });
    const convoId = created.body.id as string;
    const request = { body: { convoId, ciphertext: "AQID", epoch: 0 }, headers: { "Idempotency-Key": "victim" } };
    const sent = await xrpc(app, alice, "sendMessage", request);
    expect(sent.status).toBe(200);
    const replay = await xrpc(app, alice, "sendMessage", request);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.body).toEqual(sent.body);
  });
});
