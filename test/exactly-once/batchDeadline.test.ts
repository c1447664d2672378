/**
 * A send waiting in its lane's queue while the batch before it is stored is still bound by its request's
 * deadline (REQUEST_TIMEOUT_MS): once that passed, no statement is started for it, it answers 503 NotReady
 * ("nothing was stored, retry") and nothing is stored. Without it, a queue behind a slow database grows
 * past every request's deadline, and each send in it is stored whenever its turn comes.
 */
import { afterAll, describe, expect, it } from "vitest";
import { SEND_BATCH_SQL } from "../../src/services/sendBatch.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { xrpc } from "../helpers/xrpc.js";
import { keyedSend, soloConversation } from "./fixtures.js";

const REQUEST_TIMEOUT_MS = 500;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a send queued behind a slow batch (real PostgreSQL)", () => {
  const db = testDatabase(6);
  afterAll(() => db.close());

  for (const keyed of [false, true]) {
    it(`${keyed ? "with" : "without"} a key: 503 once its deadline passed in the queue, and nothing stored`, async () => {
      let stall: Promise<void> | undefined;
      let entered!: () => void;
      const batchEntered = new Promise<void>((resolve) => (entered = resolve));
      let release!: () => void;
      const slow = withStatementHook(db, async (sql) => {
        if (sql !== SEND_BATCH_SQL || !stall) return;
        const waiting = stall;
        stall = undefined;
        entered();
        await waiting;
      });
      const { app } = testApp(slow, { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) });
      const { alice, convoId } = await soloConversation(app, "did:plc:queuedeadline");
      // Keyed sends through the client; unkeyed ones raw (the client gives every send a key, createConvo's too: the
      // keys counted below are the sends').
      const send = async (key: string) => {
        if (keyed) {
          const answer = await keyedSend(app, alice, convoId, key);
          return { status: answer.status, error: answer.error };
        }
        const answer = await xrpc(app, alice, "sendMessage", { body: { convoId, ciphertext: "AQID", epoch: 0 } });
        return { status: answer.status, error: answer.body.error as string | undefined };
      };

      stall = new Promise<void>((resolve) => (release = resolve));
      const first = send("first");
      await batchEntered;
      // The first batch is in flight (stalled): this one waits in the queue until past its deadline.
      const queued = send("queued");
      await sleep(REQUEST_TIMEOUT_MS + 200);
      release();

      expect((await first).status).toBe(200);
      const late = await queued;
      expect([late.status, late.error]).toEqual([503, "NotReady"]);
      const [row] = await db.query<{ messages: number; keys: number }>(
        `SELECT (SELECT count(*)::int FROM messages WHERE convo_id = $1) AS messages,
                (SELECT count(*)::int FROM idempotency_keys
                  WHERE caller_did = $2 AND method = 'blue.catbird.mls.sendMessage') AS keys`,
        [convoId, alice],
      );
      expect(row).toEqual({ messages: 1, keys: keyed ? 1 : 0 });
    });
  }
});
