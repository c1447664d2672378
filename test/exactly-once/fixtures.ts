import type { Hono } from "hono";
import { expect } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { runCleanup } from "../../src/jobs/cleanup.js";
import { randomGroupId, unique } from "../helpers/context.js";
import { clientFor, outcome } from "../helpers/client.js";
import { TEST_CIPHER_SUITE as SUITE } from "../helpers/mls.js";

/** Two ciphertexts, named by their base64 as the raw requests spell them. */
export const AQID = new Uint8Array([1, 2, 3]);
export const BAUG = new Uint8Array([4, 5, 6]);

/** `did` sends `ciphertext` to `convoId` through `app` under the idempotency key `key`: the outcome. */
export const keyedSend = (app: Hono, did: string, convoId: string, key: string, ciphertext = AQID) =>
  outcome(clientFor(app, did).sendMessage({ convoId, ciphertext, epoch: 0 }, { idempotencyKey: key }));

/** The cleanup run at `now` with the configuration's default windows (welcome grace and TTL, retention). */
export const cleanupAt = (db: Database, now: Date) =>
  runCleanup(db, { now, welcomeGraceSeconds: 300, welcomeTtlSeconds: 604_800, retentionDays: 30 });

/** How many messages `convoId` holds in `db`. */
export async function messageCount(db: Database, convoId: string) {
  const [row] = await db.query<{ messages: number }>(`SELECT count(*) AS messages FROM messages WHERE convo_id = $1`, [
    convoId,
  ]);
  return row!.messages;
}

/** A new conversation `did` creates through `app`, with no other member: its id. */
export async function newConversation(app: Hono, did: string) {
  const created = await clientFor(app, did).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
  expect(created.status).toBe(200);
  return created.data.id;
}

/** A new conversation whose only member is a new DID starting with `prefix`, created through `app`. */
export async function soloConversation(app: Hono, prefix: string) {
  const alice = unique(prefix);
  return { alice, convoId: await newConversation(app, alice) };
}
