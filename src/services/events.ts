import type { Queryable } from "../db/driver.js";
import { DEFAULT_MAX_PAGE_BYTES } from "../config.js";
import { convoNotFound, cursorExpired, deviceRevoked, notMember, unknownDevice } from "../errors.js";
import type { MembershipEvent } from "./convoChange.js";
import { deviceRevokedSql, touchLastSeenSql } from "./actingDevice.js";
import { messageView, type MessageRow, type MessageView } from "./messages.js";
import { fitsPage, iso, messageViewBytes } from "./sql.js";

/** A membership event as stored: `actor` is absent on the creator's and initial members' `joined`. */
export type MembershipPayload = Omit<MembershipEvent, "actor"> & { actor?: string; epoch: number };

/** One entry of a conversation's event stream; `seq` is its cursor. */
export type ConvoEvent =
  | { seq: number; kind: "message"; message: MessageView }
  | { seq: number; kind: "membership"; membership: MembershipPayload };

export interface EventPage {
  /** The last committed event seq when the page was read. */
  head: number;
  /** Whether the reader was still an active member when the page was read. */
  active: boolean;
  events: ConvoEvent[];
  /** The cursor after this page: its last event, even one left out. */
  cursor: number;
  /** True when the page stopped at its item or byte bound with more events after it. */
  more: boolean;
}

/** The event columns of a page row (with its message, for a message event), as both page reads select them. */
export interface EventColumns extends Omit<MessageRow, "id" | "seq"> {
  seq: number | null;
  kind: "message" | "membership" | null;
  payload: MembershipPayload | null;
  id: string | null;
  message_seq: number | null;
}

interface EventRow extends EventColumns {
  head: number;
  active: boolean;
  more: boolean;
}

/** The events of a page's rows, in their order: rows without an event, and message events whose message is gone, left out. */
export function eventsOf(rows: readonly EventColumns[], convoId: string): ConvoEvent[] {
  const events: ConvoEvent[] = [];
  for (const row of rows) {
    if (row.seq === null) continue;
    if (row.kind === "membership" && row.payload) {
      events.push({ seq: row.seq, kind: "membership", membership: row.payload });
    } else if (row.kind === "message" && row.id !== null && row.message_seq !== null) {
      events.push({
        seq: row.seq,
        kind: "message",
        message: messageView(convoId, { ...row, id: row.id, seq: row.message_seq }),
      });
    }
  }
  return events;
}

/** $1 conversation, $2 caller, $3 the cursor resumed from (null: none): the head, membership and retention. */
const CONVO_HEAD_CTE = `convo AS (
  SELECT c.next_event_seq - 1 AS head, m.did IS NOT NULL AS active,
         $3::bigint >= 1 AND greatest($3::bigint, m.joined_event_seq - 1) + 1
           < coalesce((SELECT min(e.seq) FROM events e WHERE e.convo_id = c.id), c.next_event_seq) AS expired
    FROM conversations c LEFT JOIN members m ON m.convo_id = c.id AND m.did = $2 AND m.left_at IS NULL
   WHERE c.id = $1
)`;

const HEAD_SQL = `WITH ${CONVO_HEAD_CTE}
SELECT convo.head, convo.active, convo.expired, false AS unknown_device, false AS revoked
  FROM (SELECT 1) AS one LEFT JOIN convo ON true`;

/** HEAD_SQL for device $4 of the caller at time $5: checked, and its lastSeenAt moved. */
const DEVICE_HEAD_SQL = `WITH device AS (${deviceRevokedSql("$2", "$4")}), seen AS (${touchLastSeenSql("$2", "$4", "$5")}),
${CONVO_HEAD_CTE}
SELECT convo.head, convo.active, convo.expired, NOT EXISTS (SELECT 1 FROM device) AS unknown_device,
       coalesce((SELECT revoked FROM device), false) AS revoked
  FROM (SELECT 1) AS one LEFT JOIN convo ON true`;

/** A stream's device: one of the caller's registered devices (not the implicit one), and the request's time. */
export interface HeadDevice {
  id: string;
  now: Date;
}

/**
 * The last committed event seq of a conversation the caller is an active member of, in one statement, so the
 * device, the membership and the starting point come from the same snapshot. With `device`, 403 UnknownDevice
 * unless it is the caller's, 403 DeviceRevoked when it is revoked (a revocation whose event is at or before the
 * head, which a stream starting there would never see, is refused here), and its lastSeenAt moves to `now`; the
 * device is checked first, as it is the caller's identity. Then 404 when the conversation does not exist, 403
 * when the caller is not (or no longer) a member, and with `resume` (a cursor the client holds, 1 or more) 400
 * CursorExpired when retention removed events after it that the caller could have read.
 */
export async function eventHead(
  db: Queryable,
  convoId: string,
  caller: string,
  resume?: number,
  device?: HeadDevice,
): Promise<number> {
  const [row] = await db.query<{
    head: number | null;
    active: boolean | null;
    expired: boolean | null;
    unknown_device: boolean;
    revoked: boolean;
  }>(device ? DEVICE_HEAD_SQL : HEAD_SQL, [
    convoId,
    caller,
    resume ?? null,
    ...(device ? [device.id, device.now] : []),
  ]);
  if (!row) throw new Error("the head statement answers one row");
  if (row.unknown_device) throw unknownDevice();
  if (row.revoked) throw deviceRevoked();
  if (row.head === null) throw convoNotFound();
  if (!row.active) throw notMember();
  if (row.expired)
    throw cursorExpired("events after this cursor were removed by retention; reconnect without a cursor");
  return row.head;
}

export interface ReadEventsOptions {
  /** Past its first event, a page stops before its JSON would pass this many bytes. */
  maxBytes?: number;
}

/**
 * Up to `limit` events after `afterSeq`, in seq order, never before the reader's (latest) joining,
 * with the head and the reader's membership from the same snapshot; undefined when the
 * conversation no longer exists. Past its first event a page holds at most `maxBytes` of JSON.
 * Event seqs are taken under the conversation lock, so they commit in order: nothing after
 * `afterSeq` can appear later. A message event whose message retention already removed is left out.
 */
export async function readEvents(
  db: Queryable,
  convoId: string,
  reader: string,
  afterSeq: number,
  limit: number,
  { maxBytes = DEFAULT_MAX_PAGE_BYTES }: ReadEventsOptions = {},
): Promise<EventPage | undefined> {
  const rows = await db.query<EventRow>(
    `WITH s AS (
       SELECT c.next_event_seq - 1 AS head, coalesce(r.left_at IS NULL, false) AS active,
              coalesce(r.joined_event_seq, c.next_event_seq) AS joined
         FROM conversations c LEFT JOIN members r ON r.convo_id = c.id AND r.did = $2
        WHERE c.id = $1
     ), candidates AS (
       SELECT e.seq, row_number() OVER w AS n,
              sum(CASE WHEN m.seq IS NULL THEN coalesce(octet_length(e.payload::text), 0) + 128
                       ELSE ${messageViewBytes("m")} END) OVER w AS bytes
         FROM events e LEFT JOIN messages m ON m.convo_id = e.convo_id AND m.seq = e.message_seq
        WHERE e.convo_id = $1 AND e.seq > (SELECT greatest($3, s.joined - 1) FROM s)
       WINDOW w AS (ORDER BY e.seq)
        ORDER BY e.seq LIMIT $4 + 1
     ), page AS (
       SELECT seq FROM candidates WHERE n <= $4 AND ${fitsPage("$5")}
     )
     SELECT s.head, s.active, (SELECT count(*) FROM candidates) > (SELECT count(*) FROM page) AS more,
            e.seq, e.kind, e.payload,
            m.id, m.seq AS message_seq, m.sender_did, m.sender_device, m.message_type, m.epoch, m.ciphertext,
            ${iso("m.created_at")} AS created_at
       FROM s
       LEFT JOIN (page JOIN events e ON e.convo_id = $1 AND e.seq = page.seq
                  LEFT JOIN messages m ON m.convo_id = $1 AND m.seq = e.message_seq) ON true
      ORDER BY e.seq`,
    [convoId, reader, afterSeq, limit, maxBytes],
  );
  const [first] = rows;
  if (!first) return undefined;
  const read = rows.filter((row) => row.seq !== null);
  return {
    head: first.head,
    active: first.active,
    events: eventsOf(rows, convoId),
    cursor: read[read.length - 1]?.seq ?? afterSeq,
    more: first.more,
  };
}
