import type { Queryable } from "../db/driver.js";
import { convoNotFound, epochMismatch, invalidRequest, notMember } from "../errors.js";
import { bytesOut } from "../bytes.js";
import { runOnce, type KeyClaim, type OnceOutcome } from "./idempotencyKeys.js";
import { iso } from "./sql.js";

export interface SendMessage {
  convoId: string;
  sender: string;
  epoch: number;
  ciphertext: Uint8Array;
  /** An MLS proposal is stored as "proposal"; application messages and opaque bytes as "app". */
  messageType: "app" | "proposal";
  idempotencyKey?: string;
  /** The MLS group id read from the ciphertext, when it is an MLS message: must be the conversation's. */
  groupId?: string;
  now: Date;
}

export interface SentMessage {
  messageId: string;
  seq: number;
  epoch: number;
  receivedAt: string;
}

/**
 * The send as CTEs: lock the conversation row (UPDATE), take its next seq and event seq, insert the
 * message and its event. `createdAt` is the later of the clock and the previous message's, so it
 * never decreases as seq grows. The membership check reads the snapshot of the statement's start;
 * if the statement waited for the lock while a membership change committed, `membership_version`
 * differs from that snapshot's and nothing is written (the caller retries). `guard` adds conditions.
 */
const sendCtes = (guard = "") => `conv AS (
  UPDATE conversations c
     SET next_seq = c.next_seq + 1,
         next_event_seq = c.next_event_seq + 1,
         last_message_at = greatest(c.last_message_at, $6)
   WHERE c.id = $1 AND c.epoch >= $3 AND ($8::text IS NULL OR c.group_id = $8)
     AND c.membership_version = (SELECT v.membership_version FROM conversations v WHERE v.id = $1)
     AND EXISTS (SELECT 1 FROM members m WHERE m.convo_id = c.id AND m.did = $2 AND m.left_at IS NULL)
     AND ($5::text IS NULL OR NOT EXISTS (
           SELECT 1 FROM messages x WHERE x.sender_did = $2 AND x.idempotency_key = $5))${guard}
  RETURNING c.id, c.next_seq - 1 AS seq, c.next_event_seq - 1 AS event_seq, c.last_message_at
), message AS (
  INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, idempotency_key, created_at)
  SELECT $7, conv.id, conv.seq, $2, $9, $3, $4, $5, conv.last_message_at FROM conv
  RETURNING id, seq, created_at
), event AS (
  INSERT INTO events (convo_id, seq, kind, message_seq, created_at)
  SELECT conv.id, conv.event_seq, 'message', conv.seq, conv.last_message_at FROM conv
)`;

/** The send in one statement. */
export const SEND_MESSAGE_SQL = `WITH ${sendCtes()}
SELECT id, seq, ${iso("created_at")} AS created_at FROM message`;

/**
 * A keyed send in one statement, idempotency record included ($10 method, $11 request hash,
 * $12 expiry, $13 longest wait: the parameters `runOnce` appends). When (caller, method, key) has no committed record, it sends and
 * inserts the record with its answer, the JSON text the client gets; when it has one, it writes
 * nothing and returns that record. The record's primary key is the backstop: a concurrent first
 * request with the same key makes this insert wait (at most $13, the lock_timeout) and then fail,
 * rolling the whole send back.
 */
export const SEND_MESSAGE_ONCE_SQL = `WITH wait AS (SELECT set_config('lock_timeout', $13, true) AS lock_timeout),
existing AS (
  SELECT k.request_hash, k.status_code, k.response, k.expires_at <= $6 AS expired
    FROM idempotency_keys k WHERE k.caller_did = $2 AND k.method = $10 AND k.key = $5
), ${sendCtes(`
     AND NOT EXISTS (SELECT 1 FROM existing) AND (SELECT lock_timeout FROM wait) IS NOT NULL`)}, answer AS (
  SELECT row_to_json(a)::text AS response FROM (
    SELECT m.id AS "messageId", m.seq AS "seq", $3::bigint AS "epoch", ${iso("m.created_at")} AS "receivedAt" FROM message m
  ) a
), claim AS (
  INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
  SELECT $2, $10, $5, $11, 200, answer.response, $6, $12 FROM answer
)
SELECT true AS sent, response, NULL AS request_hash, 200 AS status_code, false AS expired FROM answer
UNION ALL
SELECT false, response, request_hash, status_code, expired FROM existing`;

/**
 * Stores an application message in one round trip on the common path. When nothing was written,
 * a second query says why: not a member, a future epoch, another group, or the message this
 * idempotency key already stored. If a membership change raced the send, it is sent again with
 * the conversation locked first, which no membership change can race.
 */
export async function sendMessage(db: Queryable, message: SendMessage): Promise<SentMessage> {
  const sent = (await storeMessage(db, message)) ?? (await explainUnsent(db, message));
  if (sent) return sent;
  return db.transaction(async (tx) => {
    await tx.query(`SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE`, [message.convoId]);
    const locked = (await storeMessage(tx, message)) ?? (await explainUnsent(tx, message));
    if (!locked) throw new Error("send wrote nothing while holding the conversation lock");
    return locked;
  });
}

/**
 * The keyed send with its idempotency record, in one statement and one implicit transaction (the
 * hot path of exactly-once sends). Anything but a plain first send or a plain repeat (an error to
 * explain, a race with a membership change or with a concurrent request holding the same key)
 * comes back `undefined`, and the caller takes the general path, which handles every case.
 */
export async function sendMessageOnce(db: Queryable, message: SendMessage, claim: KeyClaim): Promise<OnceOutcome> {
  const [scopeCaller, , key] = claim.scope;
  // The statement scopes the record by the sender ($2) and the message's key ($5): it must be the claim's scope.
  if (scopeCaller !== message.sender || key !== message.idempotencyKey) return undefined;
  return runOnce(db, SEND_MESSAGE_ONCE_SQL, sendParams(message), claim);
}

function sendParams(message: SendMessage): unknown[] {
  return [
    message.convoId,
    message.sender,
    message.epoch,
    message.ciphertext,
    message.idempotencyKey ?? null,
    message.now,
    crypto.randomUUID(),
    message.groupId ?? null,
    message.messageType,
  ];
}

async function storeMessage(db: Queryable, message: SendMessage): Promise<SentMessage | undefined> {
  const [sent] = await db.query<{ id: string; seq: number; created_at: string }>(SEND_MESSAGE_SQL, sendParams(message));
  return sent && { messageId: sent.id, seq: sent.seq, epoch: message.epoch, receivedAt: sent.created_at };
}

/** Why the send wrote nothing: throws the client's error, returns the earlier message for this key, or undefined (a race). */
async function explainUnsent(db: Queryable, message: SendMessage): Promise<SentMessage | undefined> {
  const [row] = await db.query<{
    epoch: number;
    group_id: string;
    is_member: boolean;
    previous: { id: string; seq: number; epoch: number; created_at: string } | null;
  }>(
    `SELECT c.epoch, c.group_id,
            EXISTS (SELECT 1 FROM members m WHERE m.convo_id = c.id AND m.did = $2 AND m.left_at IS NULL) AS is_member,
            (SELECT json_build_object('id', x.id, 'seq', x.seq, 'epoch', x.epoch, 'created_at', ${iso("x.created_at")})
               FROM messages x WHERE x.sender_did = $2 AND x.idempotency_key = $3) AS previous
       FROM conversations c WHERE c.id = $1`,
    [message.convoId, message.sender, message.idempotencyKey ?? null],
  );
  if (!row) throw convoNotFound();
  if (!row.is_member) throw notMember();
  if (row.previous) {
    const { id, seq, epoch, created_at } = row.previous;
    return { messageId: id, seq, epoch, receivedAt: created_at };
  }
  if (message.groupId !== undefined && message.groupId !== row.group_id) {
    throw invalidRequest("ciphertext belongs to another MLS group");
  }
  if (message.epoch > row.epoch) throw epochMismatch(row.epoch);
  return undefined;
}

export type MessageType = "app" | "commit" | "proposal";

export interface MessageView {
  id: string;
  convoId: string;
  sender: string;
  ciphertext: { $bytes: string };
  epoch: number;
  seq: number;
  messageType: MessageType;
  createdAt: string;
}

interface MessageRow {
  id: string;
  sender_did: string;
  ciphertext: Uint8Array;
  epoch: number;
  seq: number;
  message_type: MessageType;
  created_at: string;
}

export const LIST_MESSAGES_SQL = `SELECT id, sender_did, ciphertext, epoch, seq, message_type, ${iso("created_at")} AS created_at
  FROM messages WHERE convo_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`;

/** Messages after `afterSeq` in ascending seq, keyset on the (convo_id, seq) index: no offset scans. */
export async function listMessages(
  db: Queryable,
  convoId: string,
  afterSeq: number,
  limit: number,
): Promise<{ messages: MessageView[]; cursor?: string }> {
  const rows = await db.query<MessageRow>(LIST_MESSAGES_SQL, [convoId, afterSeq, limit + 1]);
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    messages: page.map((row) => ({
      id: row.id,
      convoId,
      sender: row.sender_did,
      ciphertext: bytesOut(row.ciphertext),
      epoch: row.epoch,
      seq: row.seq,
      messageType: row.message_type,
      createdAt: row.created_at,
    })),
    ...(rows.length > limit && last && { cursor: String(last.seq) }),
  };
}

/** The seq of a message of this conversation, for the older `sinceMessage` parameter. */
export async function seqOfMessage(db: Queryable, convoId: string, messageId: string): Promise<number> {
  const [row] = await db.query<{ seq: number }>(`SELECT seq FROM messages WHERE convo_id = $1 AND id = $2`, [
    convoId,
    messageId,
  ]);
  if (!row) throw invalidRequest("sinceMessage names no message of this conversation");
  return row.seq;
}

export interface CommitView {
  id: string;
  epoch: number;
  ciphertext: { $bytes: string };
  sender: string;
  createdAt: string;
}

/** Accepted commits with epochs in [fromEpoch, toEpoch], oldest first (one per epoch). */
export async function listCommits(
  db: Queryable,
  convoId: string,
  fromEpoch: number,
  toEpoch: number | undefined,
  limit: number,
): Promise<CommitView[]> {
  const rows = await db.query<MessageRow>(
    `SELECT id, sender_did, ciphertext, epoch, ${iso("created_at")} AS created_at
       FROM messages
      WHERE convo_id = $1 AND message_type = 'commit' AND epoch >= $2 AND ($3::bigint IS NULL OR epoch <= $3)
      ORDER BY epoch LIMIT $4`,
    [convoId, fromEpoch, toEpoch ?? null, limit],
  );
  return rows.map((row) => ({
    id: row.id,
    epoch: row.epoch,
    ciphertext: bytesOut(row.ciphertext),
    sender: row.sender_did,
    createdAt: row.created_at,
  }));
}

export async function updateCursor(db: Queryable, convoId: string, did: string, cursor: string, now: Date) {
  await db.query(
    `INSERT INTO read_cursors (convo_id, did, cursor, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (convo_id, did) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at`,
    [convoId, did, cursor, now],
  );
}
