import type { Queryable } from "../db/driver.js";
import {
  convoNotFound,
  cursorExpired,
  deviceRevoked,
  epochMismatch,
  invalidRequest,
  notApplicationMessage,
  notMember,
  unknownDevice,
  XrpcError,
} from "../errors.js";
import { bytesOut } from "../bytes.js";
import { IMPLICIT_DEVICE, LAST_SEEN_GRANULARITY } from "./actingDevice.js";
import { ACCESS_REFUSALS, type AccessRefusal } from "./membership.js";
import { fitsPage, isActiveMember, isInRoster, iso, messageViewBytes } from "./sql.js";

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
  /** The sending device: IMPLICIT_DEVICE, or one of the sender's devices (checked by the send itself). */
  senderDevice: string;
  /** The bytes are no MLS message at all: allowed only in conversations that are not roster-checked. */
  opaque: boolean;
  now: Date;
}

const deviceNotInRoster = () =>
  new XrpcError(403, "NotMember", "this device is not in the conversation's MLS group (its roster)");

export interface SentMessage {
  messageId: string;
  seq: number;
  epoch: number;
  receivedAt: string;
}

/**
 * One send in one statement: lock the conversation row (UPDATE), take its next seq and event seq, insert the
 * message and its event. `createdAt` is the later of the clock and the previous message's, so it
 * never decreases as seq grows. The membership check reads the snapshot of the statement's start;
 * if the statement waited for the lock while a membership change committed, `membership_version`
 * differs from that snapshot's and nothing is written (the caller retries).
 * The idempotency key ($5) is stored with the message but never looked up: a key's one message is
 * guaranteed by its idempotency record, which lives exactly as long as the key does.
 *
 * The sending device ($10) must be registered and not revoked (the implicit device '' always is), and
 * in a roster-checked conversation it must be in the roster and the bytes must be MLS ($11: opaque).
 * Roster changes and revocations there come with membership events, which move `membership_version`,
 * so the snapshot's roster is the one the lock holder left. `seen` moves the device's lastSeenAt as
 * `requireDevice` does, but skips a row another transaction holds: devices are locked before
 * conversations everywhere else, and this statement already holds the conversation row.
 * It looks the device up for the implicit one too, finding no row (no device id is ''): guarded by `$10 <> ''`,
 * the custom plan of an implicit device's opaque send dropped so much that it looked cheaper than the generic
 * plan, and PostgreSQL re-planned the statement on every send (planning costs more than the send).
 *
 * This is the general path's send (alone, see `sendMessage`); the common one is a batch (SEND_BATCH_SQL).
 */
export const SEND_MESSAGE_SQL = `WITH conv AS (
  UPDATE conversations c
     SET next_seq = c.next_seq + 1,
         next_event_seq = c.next_event_seq + 1,
         last_message_at = greatest(c.last_message_at, $6)
   WHERE c.id = $1 AND c.epoch >= $3 AND ($8::text IS NULL OR c.group_id = $8)
     AND c.membership_version = (SELECT v.membership_version FROM conversations v WHERE v.id = $1)
     AND ${isActiveMember("c.id", "$2")}
     AND ($10::text = '' OR EXISTS (SELECT 1 FROM devices d WHERE d.did = $2 AND d.device_id = $10 AND d.revoked_at IS NULL))
     AND (NOT c.roster_checked
          OR (NOT $11::boolean AND ${isInRoster("c.id", "$2", "$10")}))
  RETURNING c.id, c.next_seq - 1 AS seq, c.next_event_seq - 1 AS event_seq, c.last_message_at
), message AS (
  INSERT INTO messages (id, convo_id, seq, sender_did, sender_device, message_type, epoch, ciphertext, idempotency_key, created_at)
  SELECT $7, conv.id, conv.seq, $2, $10, $9, $3, $4, $5, conv.last_message_at FROM conv
  RETURNING id, seq, created_at
), event AS (
  INSERT INTO events (convo_id, seq, kind, message_seq, created_at)
  SELECT conv.id, conv.event_seq, 'message', conv.seq, conv.last_message_at FROM conv
), seen AS (
  UPDATE devices SET last_seen_at = $6
   WHERE (did, device_id) IN (
     SELECT did, device_id FROM devices
      WHERE did = $2 AND device_id = $10 AND revoked_at IS NULL
        AND last_seen_at < $6::timestamptz - interval '${LAST_SEEN_GRANULARITY}'
        FOR NO KEY UPDATE SKIP LOCKED)
)
SELECT id, seq, ${iso("created_at")} AS created_at FROM message`;

/**
 * Stores an application message in one round trip on the common path. When nothing was written,
 * a second query says why: not a member, a future epoch, another group. If a membership change
 * raced the send, it is sent again with the conversation locked first, which no membership change
 * can race.
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
    message.senderDevice,
    message.opaque,
  ];
}

async function storeMessage(db: Queryable, message: SendMessage): Promise<SentMessage | undefined> {
  const [sent] = await db.query<{ id: string; seq: number; created_at: string }>(SEND_MESSAGE_SQL, sendParams(message));
  return sent && { messageId: sent.id, seq: sent.seq, epoch: message.epoch, receivedAt: sent.created_at };
}

/** Why the send wrote nothing: throws the client's error, or returns undefined (a race). */
async function explainUnsent(db: Queryable, message: SendMessage): Promise<undefined> {
  const [row] = await db.query<{
    epoch: number | null;
    group_id: string;
    roster_checked: boolean;
    is_member: boolean;
    in_roster: boolean;
    revoked: boolean | null;
  }>(
    `SELECT c.epoch, c.group_id, c.roster_checked,
            ${isActiveMember("c.id", "$2")} AS is_member,
            ${isInRoster("c.id", "$2", "$3")} AS in_roster,
            (SELECT d.revoked_at IS NOT NULL FROM devices d WHERE d.did = $2 AND d.device_id = $3) AS revoked
       FROM (SELECT 1) AS one LEFT JOIN conversations c ON c.id = $1`,
    [message.convoId, message.sender, message.senderDevice],
  );
  if (message.senderDevice !== IMPLICIT_DEVICE && row?.revoked == null) throw unknownDevice();
  if (row?.revoked) throw deviceRevoked();
  if (!row || row.epoch === null) throw convoNotFound();
  if (!row.is_member) throw notMember();
  if (row.roster_checked && !row.in_roster) throw deviceNotInRoster();
  if (row.roster_checked && message.opaque) {
    throw notApplicationMessage("a roster-checked conversation takes MLS application messages and proposals only");
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
  /** The sender's device: "" for its implicit device (and for commits stored without one). */
  senderDevice: string;
  ciphertext: { $bytes: string };
  epoch: number;
  seq: number;
  messageType: MessageType;
  createdAt: string;
}

/** The columns of a message row a view is built from, as the reads select them. */
export interface MessageRow {
  id: string;
  sender_did: string;
  sender_device: string;
  ciphertext: Uint8Array;
  epoch: number;
  seq: number;
  message_type: MessageType;
  created_at: string;
}

/** The API's view of a message row of conversation `convoId`. */
export function messageView(convoId: string, row: MessageRow): MessageView {
  return {
    id: row.id,
    convoId,
    sender: row.sender_did,
    senderDevice: row.sender_device,
    ciphertext: bytesOut(row.ciphertext),
    epoch: row.epoch,
    seq: row.seq,
    messageType: row.message_type,
    createdAt: row.created_at,
  };
}

type PageRow<T> = { refusal: AccessRefusal | null; expired: boolean; more: boolean } & { [K in keyof T]: T[K] | null };

export interface CommitView {
  id: string;
  epoch: number;
  ciphertext: { $bytes: string };
  sender: string;
  senderDevice: string;
  createdAt: string;
}

/**
 * One page of commits for an active member, with the membership check, in one statement: epochs
 * from `$3` to `$6` (or on), none before the epoch the member (last) joined at, at most `$4` and,
 * past the first, at most `$5` bytes. Every epoch from there to the current one had its commit
 * stored, so the oldest commit kept (or the current epoch when none is) tells whether retention
 * removed commits the member asks for. `refusal` names why there is no page. The upper bound is a
 * coalesce, not "$6 IS NULL OR ...", which a generic plan checks on every later commit instead of ending the
 * index scan there.
 */
export const LIST_COMMITS_SQL = `WITH reader AS (
  SELECT c.epoch, m.joined_epoch
    FROM conversations c LEFT JOIN members m ON m.convo_id = c.id AND m.did = $2 AND m.left_at IS NULL
   WHERE c.id = $1
), access AS MATERIALIZED (
  SELECT CASE WHEN r.epoch IS NULL THEN 'ConvoNotFound' WHEN r.joined_epoch IS NULL THEN 'NotMember' END AS refusal,
         r.epoch, r.joined_epoch
    FROM (SELECT 1) AS one LEFT JOIN reader r ON true
), candidates AS (
  SELECT x.seq, row_number() OVER w AS n, sum(${messageViewBytes("x")}) OVER w AS bytes
    FROM messages x
   WHERE x.convo_id = $1 AND x.message_type = 'commit'
     AND x.epoch >= (SELECT greatest($3, a.joined_epoch) FROM access a WHERE a.refusal IS NULL)
     AND x.epoch <= coalesce($6::bigint, ${Number.MAX_SAFE_INTEGER})
  WINDOW w AS (ORDER BY x.epoch)
   ORDER BY x.epoch LIMIT $4 + 1
), page AS (
  SELECT seq FROM candidates WHERE n <= $4 AND ${fitsPage("$5")}
), state AS MATERIALIZED (
  SELECT a.refusal,
         a.refusal IS NULL AND greatest($3, a.joined_epoch) < coalesce(
           (SELECT min(k.epoch) FROM messages k
             WHERE k.convo_id = $1 AND k.message_type = 'commit' AND k.epoch >= a.joined_epoch), a.epoch) AS expired,
         (SELECT count(*) FROM candidates) > (SELECT count(*) FROM page) AS more
    FROM access a
)
SELECT state.refusal, state.expired, state.more, x.id, x.sender_did, x.sender_device, x.ciphertext, x.epoch,
       ${iso("x.created_at")} AS created_at
  FROM state
  LEFT JOIN (page JOIN messages x ON x.convo_id = $1 AND x.seq = page.seq) ON true
 ORDER BY x.epoch`;

export interface ListCommits {
  convoId: string;
  reader: string;
  fromEpoch: number;
  toEpoch?: number;
  limit: number;
  maxBytes: number;
}

/**
 * Accepted commits with epochs in [fromEpoch, toEpoch], oldest first (one per epoch), from the
 * reader's (latest) joining on, bounded in items and bytes; `cursor` is the last epoch returned.
 * 404 ConvoNotFound, 403 NotMember unless the reader is an active member; 400 CursorExpired when
 * retention removed commits the reader asked for.
 */
export async function listCommits(
  db: Queryable,
  request: ListCommits,
): Promise<{ commits: CommitView[]; cursor?: string }> {
  const rows = await db.query<PageRow<MessageRow>>(LIST_COMMITS_SQL, [
    request.convoId,
    request.reader,
    request.fromEpoch,
    request.limit,
    request.maxBytes,
    request.toEpoch ?? null,
  ]);
  const [first] = rows;
  if (!first) throw new Error("the commits statement answers at least one row");
  if (first.refusal) throw ACCESS_REFUSALS[first.refusal]();
  if (first.expired) throw cursorExpired("commits from this epoch on were removed by retention");
  const page = rows.filter((row): row is PageRow<MessageRow> & MessageRow => row.id !== null);
  const last = page[page.length - 1];
  return {
    commits: page.map((row) => ({
      id: row.id,
      epoch: row.epoch,
      ciphertext: bytesOut(row.ciphertext),
      sender: row.sender_did,
      senderDevice: row.sender_device,
      createdAt: row.created_at,
    })),
    ...(first.more && last && { cursor: String(last.epoch) }),
  };
}
