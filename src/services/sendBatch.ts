import { ADVISORY_LOCK } from "../db/advisoryLocks.js";
import type { Queryable } from "../db/driver.js";
import { LAST_SEEN_GRANULARITY } from "./actingDevice.js";
import type { ConvoEvent } from "./events.js";
import { keyLockId, type KeyClaim, type OnceOutcome } from "./idempotencyKeys.js";
import { messageView, type SendMessage } from "./messages.js";
import { iso } from "./sql.js";

/**
 * Whether the correlated `select` finds a row, looked up by index for each item: as EXISTS, PostgreSQL
 * may hash the whole table instead (all active members, all devices) when its statistics say it is small.
 */
const perItem = (select: string) => `(${select} LIMIT 1) IS NOT NULL`;

/** One send in a batch: the message, and its key's claim when the request has an idempotency key. */
export interface BatchItem {
  message: SendMessage;
  claim?: KeyClaim;
}

/** The NOTIFY a batch sends with its commit, one per conversation written: payload `<origin> <convoId>`. */
export interface BatchNotice {
  channel: string;
  origin: string;
}

/** A message the batch stored, as the event its conversation's streams send. */
export interface StoredEvent {
  convoId: string;
  /** Built when read (a getter): only a conversation with a stream on this instance needs its view (base64 of the ciphertext). */
  readonly event: ConvoEvent;
}

/** What a batch's statement did: each item's outcome in order, and the events it wrote. */
export interface BatchResult {
  /** Undefined for an item the general path must take, and for a held one. */
  outcomes: OnceOutcome[];
  /**
   * The positions of the items whose conversation another transaction held (the statement skipped it), or, for a
   * statement that waits for the rows, that went away while it waited.
   */
  held: number[];
  /** In no particular order; per conversation, every event seq the batch took (consecutive ones). */
  events: StoredEvent[];
}

/** Item `i`'s sender is an active member of its conversation (in the statement's snapshot). */
const ACTIVE_SENDER = perItem(`SELECT 1 FROM members m WHERE m.convo_id = i.c AND m.did = i.s AND m.left_at IS NULL`);

/**
 * Many sends in one statement and one commit (group commit), across conversations; each item keeps
 * every check of the one-message send and gets its own outcome.
 *
 * $1 the items (JSON: `n` the position, the message's fields, `off`/`len` its ciphertext in $2, and
 * for a keyed item its key `k`, request hash `h` and expiry `x`), $2 the ciphertexts end to end,
 * $3 the batch's time, $4 the method (the keys' scope), $5 the key lock class, $6/$7 the NOTIFY's
 * channel and origin (null: none).
 *
 * `convoLocks` is how the statement takes its conversations' rows (`locks`, with `before` and `after` them; see
 * SEND_BATCH_SQL and SEND_HELD_BATCH_SQL). A key another transaction holds (its advisory lock, which every
 * claim takes) is skipped: its item comes back with no row, for the general path. Per conversation, the accepted
 * items take consecutive seqs from the locked row in the order of `n`. The checks read the statement's
 * snapshot; the locked row is the latest version, so a membership change that committed after the
 * snapshot shows as a different `membership_version`, and that conversation's items take the general
 * path. A key whose committed record is found comes back `stored` (a repeat); an expired one takes the
 * general path (it is taken over there). An item whose sender is an active member of its conversation in the
 * statement's snapshot, but whose conversation was not locked (another transaction held it, or it went away
 * while the statement waited), comes back `held`: anyone else's item takes the general path, which refuses it
 * at once, so no outsider waits for, or learns of, a conversation's lock.
 *
 * Each conversation written is notified (`<origin> <convoId>`) with the commit: other instances' streams
 * wake without a NOTIFY transaction of the writer's own, and the notify lock taken at commit serialises
 * batch commits only.
 *
 * Every table is reached by index from the items' values (`= ANY (ARRAY(...))`, LATERAL lookups,
 * per-item subqueries), never by a join the planner may turn into a scan: the statement's generic
 * plan is made once per connection, maybe while a table was still small, and then kept. The conversations
 * are locked one LATERAL lookup each, in id order (`wanted`): as `id = ANY (...)`, a plan made while the
 * table held a few pages scanned them all, comparing each row with every item.
 */
const batchSql = (convoLocks: { before?: string; locks: string; after?: string }) => `WITH item AS MATERIALIZED (
  SELECT * FROM jsonb_to_recordset($1::text::jsonb)
    AS i(n int, c text, s text, d text, e bigint, id text, t text, g text, o boolean, k text, h text, x timestamptz, off int, len int)
),${convoLocks.before ?? ""} free AS MATERIALIZED (
  SELECT item.n FROM item WHERE item.k IS NULL OR pg_try_advisory_xact_lock($5, ${keyLockId("item.s", "$4", "item.k")})
), convo AS MATERIALIZED (
  SELECT c.* FROM (SELECT DISTINCT item.c FROM item ORDER BY item.c) wanted CROSS JOIN LATERAL (
    SELECT c.id, c.epoch, c.group_id, c.roster_checked, c.membership_version
      FROM conversations c WHERE c.id = wanted.c
      ${convoLocks.locks}
  ) c
), existing AS (
  SELECT i.n, k.request_hash, k.status_code, k.response, k.expires_at <= $3 AS expired
    FROM item i CROSS JOIN LATERAL (
      SELECT * FROM idempotency_keys k WHERE k.caller_did = i.s AND k.method = $4 AND k.key = i.k LIMIT 1
    ) k
), accepted AS (
  SELECT i.*, row_number() OVER (PARTITION BY i.c ORDER BY i.n) AS rank
    FROM item i JOIN convo l ON l.id = i.c
   WHERE i.n IN (SELECT free.n FROM free) AND i.n NOT IN (SELECT existing.n FROM existing)
     AND l.membership_version = (SELECT v.membership_version FROM conversations v WHERE v.id = i.c)
     AND l.epoch >= i.e AND (i.g IS NULL OR l.group_id = i.g)
     AND ${ACTIVE_SENDER}
     AND (i.d = '' OR ${perItem(`SELECT 1 FROM devices d WHERE d.did = i.s AND d.device_id = i.d AND d.revoked_at IS NULL`)})
     AND (NOT l.roster_checked
          OR (NOT i.o AND ${perItem(`SELECT 1 FROM roster r WHERE r.convo_id = i.c AND r.did = i.s AND r.device_id = i.d`)}))
     ${convoLocks.after ?? ""}
), bump AS (
  UPDATE conversations c
     SET next_seq = c.next_seq + a.count,
         next_event_seq = c.next_event_seq + a.count,
         last_message_at = greatest(c.last_message_at, $3)
    FROM (SELECT accepted.c, count(*) AS count FROM accepted GROUP BY accepted.c) a
   WHERE c.id = ANY (ARRAY(SELECT accepted.c FROM accepted)) AND c.id = a.c
  RETURNING c.id, c.next_seq - a.count AS first_seq, c.next_event_seq - a.count AS first_event_seq, c.last_message_at,
            CASE WHEN $6::text IS NOT NULL THEN pg_notify($6, $7::text || ' ' || c.id) END AS notified
), placed AS (
  SELECT a.*, b.first_seq + a.rank - 1 AS seq, b.first_event_seq + a.rank - 1 AS event_seq, b.last_message_at AS at
    FROM accepted a JOIN bump b ON b.id = a.c
), message AS (
  INSERT INTO messages (id, convo_id, seq, sender_did, sender_device, message_type, epoch, ciphertext, idempotency_key, created_at)
  SELECT p.id, p.c, p.seq, p.s, p.d, p.t, p.e, substring($2::bytea FROM p.off + 1 FOR p.len), p.k, p.at FROM placed p
), event AS (
  INSERT INTO events (convo_id, seq, kind, message_seq, created_at)
  SELECT p.c, p.event_seq, 'message', p.seq, p.at FROM placed p
), answer AS (
  SELECT p.n, p.s, p.k, p.h, p.x, p.event_seq, (
    SELECT row_to_json(a)::text FROM (
      SELECT p.id AS "messageId", p.seq AS "seq", p.e AS "epoch", ${iso("p.at")} AS "receivedAt"
    ) a) AS response
    FROM placed p
), claim AS (
  INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
  SELECT answer.s, $4, answer.k, answer.h, 200, answer.response, $3, answer.x FROM answer WHERE answer.k IS NOT NULL
), seen AS (
  UPDATE devices SET last_seen_at = $3
   WHERE did = ANY (ARRAY(SELECT placed.s FROM placed WHERE placed.d <> '')) AND (did, device_id) IN (
     SELECT d.did, d.device_id FROM placed p CROSS JOIN LATERAL (
       SELECT d.did, d.device_id FROM devices d
        WHERE d.did = p.s AND d.device_id = p.d AND d.revoked_at IS NULL
          AND d.last_seen_at < $3::timestamptz - interval '${LAST_SEEN_GRANULARITY}'
          FOR NO KEY UPDATE SKIP LOCKED) d
      WHERE p.d <> '')
)
SELECT answer.n, true AS sent, false AS held, answer.response, NULL AS request_hash, NULL AS status_code, answer.event_seq
  FROM answer
UNION ALL
SELECT existing.n, false, false, existing.response, existing.request_hash, existing.status_code, NULL FROM existing
 WHERE NOT existing.expired AND existing.response IS NOT NULL
UNION ALL
SELECT i.n, false, true, NULL, NULL, NULL, NULL FROM item i
 WHERE i.n IN (SELECT free.n FROM free) AND i.n NOT IN (SELECT existing.n FROM existing)
   AND i.c NOT IN (SELECT convo.id FROM convo)
   AND ${ACTIVE_SENDER}`;

/**
 * The batch statement (see batchSql): it waits for nothing. A conversation row another transaction holds
 * is skipped (SKIP LOCKED), and its items come back `held`.
 */
export const SEND_BATCH_SQL = batchSql({ locks: "FOR NO KEY UPDATE SKIP LOCKED" });

/**
 * The batch statement for items that came back `held` (SendLane gives it one conversation's): it waits for
 * their conversations' rows, in id order (two such statements wait on each other, never in a cycle), each wait
 * at most `$8`. That lock_timeout is set before the first row is locked and set back to the connection's own
 * once every row is (`count(*)` reads all of them first), so no later wait of the statement, nor its commit's,
 * is cut short by it. A wait past it fails the statement with 55P03.
 */
export const SEND_HELD_BATCH_SQL = batchSql({
  before: ` setting AS MATERIALIZED (SELECT current_setting('lock_timeout') AS before),`,
  locks: `AND (SELECT set_config('lock_timeout', $8::text, true) FROM setting) IS NOT NULL FOR NO KEY UPDATE`,
  after: `AND (SELECT set_config('lock_timeout', setting.before, true) FROM setting WHERE (SELECT count(*) FROM convo) >= 0) IS NOT NULL`,
});

interface BatchRow {
  n: number;
  sent: boolean;
  held: boolean;
  response: string;
  request_hash: string | null;
  status_code: number | null;
  event_seq: number | null;
}

/** A stored send's answer (the JSON the batch built). */
interface Answer {
  messageId: string;
  seq: number;
  epoch: number;
  receivedAt: string;
}

/**
 * Stores a batch of sends in one statement (its own implicit transaction, one commit) and returns
 * each item's outcome in order: its answer, a repeat's committed answer, or undefined for an item
 * the general path must take (an error to explain, a held key, a raced membership change, an expired
 * key), the items whose conversation was held, and the events it wrote. Throws when the statement
 * failed: then nothing of the batch was stored. With `notice`, the commit notifies each conversation
 * written. With `heldWaitMs`, the statement waits that long at most for each conversation's row
 * (SEND_HELD_BATCH_SQL); without, it waits for none (SEND_BATCH_SQL).
 */
export async function storeBatch(
  db: Queryable,
  items: readonly BatchItem[],
  method: string,
  notice?: BatchNotice,
  heldWaitMs?: number,
): Promise<BatchResult> {
  const ciphertexts = new Uint8Array(items.reduce((total, { message }) => total + message.ciphertext.byteLength, 0));
  let offset = 0;
  const rows = items.map(({ message, claim }, n) => {
    const row = {
      n,
      // As the general path's text parameter would be (UTF-8 turns a lone surrogate into U+FFFD); jsonb refuses one.
      // No text holds NUL (jsonb refuses it too, failing the whole batch): such an id names no conversation, nor does null.
      c: message.convoId.includes("\0") ? null : message.convoId.toWellFormed(),
      s: message.sender,
      d: message.senderDevice,
      e: message.epoch,
      id: crypto.randomUUID(),
      t: message.messageType,
      g: message.groupId ?? null,
      o: message.opaque,
      k: claim ? claim.scope[2] : null,
      h: claim?.requestHash ?? null,
      x: claim?.expiresAt.toISOString() ?? null,
      off: offset,
      len: message.ciphertext.byteLength,
    };
    ciphertexts.set(message.ciphertext, offset);
    offset += message.ciphertext.byteLength;
    return row;
  });
  // The batch's time: its latest request's, so no message is stamped before its request arrived.
  const now = new Date(Math.max(...items.map(({ message }) => message.now.getTime())));
  const params = [
    JSON.stringify(rows),
    ciphertexts,
    now,
    method,
    ADVISORY_LOCK.idempotencyKey,
    notice?.channel ?? null,
    notice?.origin ?? null,
  ];
  const result =
    heldWaitMs === undefined
      ? await db.query<BatchRow>(SEND_BATCH_SQL, params)
      : await db.query<BatchRow>(SEND_HELD_BATCH_SQL, [...params, String(heldWaitMs)]);
  const outcomes: OnceOutcome[] = items.map(() => undefined);
  const held: number[] = [];
  const events: StoredEvent[] = [];
  for (const row of result) {
    if (row.held) {
      held.push(row.n);
      continue;
    }
    outcomes[row.n] = row.sent
      ? { sent: row.response }
      : { stored: { requestHash: row.request_hash!, statusCode: row.status_code!, response: row.response } };
    if (!row.sent) continue;
    const { message } = items[row.n]!;
    const convoId = rows[row.n]!.c!;
    const eventSeq = row.event_seq!;
    const response = row.response;
    events.push({
      convoId,
      get event() {
        return storedEvent(message, convoId, eventSeq, response);
      },
    });
  }
  return { outcomes, held, events };
}

/** The message event a stored send wrote, as a read of the events table would return it. */
function storedEvent(message: SendMessage, convoId: string, eventSeq: number, response: string): ConvoEvent {
  const answer = JSON.parse(response) as Answer;
  const view = messageView(convoId, {
    id: answer.messageId,
    sender_did: message.sender,
    sender_device: message.senderDevice,
    ciphertext: message.ciphertext,
    epoch: answer.epoch,
    seq: answer.seq,
    message_type: message.messageType,
    created_at: answer.receivedAt,
  });
  return { seq: eventSeq, kind: "message", message: view };
}
