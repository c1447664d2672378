import type { Queryable } from "../db/driver.js";
import { eventsOf, type ConvoEvent, type EventColumns } from "./events.js";
import { iso, messageViewBytes } from "./sql.js";

/** One page of a conversation's events read once for several readers (the streams following it). */
export interface SharedEventPage {
  /** The last committed event seq when the page was read. */
  head: number;
  /** Which of the readers asked about were active members when the page was read. */
  active: Set<string>;
  events: ConvoEvent[];
  /** The cursor after this page: its last event, even one left out. */
  cursor: number;
  /** True when the page stopped at its item or byte bound, so more events may follow right away. */
  more: boolean;
}

interface SharedRow extends EventColumns {
  head: number;
  active: string[];
  total: number | null;
}

/**
 * One page of a conversation's events for several readers: $1 the conversation, $2 the readers (a JSON
 * array), $3 the seq the page follows, $4 its most events, $5 about its most bytes.
 */
export const SHARED_EVENTS_SQL = `WITH s AS (
  SELECT c.next_event_seq - 1 AS head,
         (SELECT coalesce(json_agg(r.did), '[]'::json) FROM members r
           WHERE r.convo_id = c.id AND r.left_at IS NULL
             AND r.did IN (SELECT jsonb_array_elements_text($2::text::jsonb))) AS active
    FROM conversations c WHERE c.id = $1
), p AS (
  SELECT e.seq, e.kind, e.payload, m.id, m.seq AS message_seq, m.sender_did, m.sender_device, m.message_type, m.epoch,
         m.ciphertext, m.created_at, count(*) OVER () AS total,
         coalesce(sum(coalesce(${messageViewBytes("m")}, 0) + octet_length(coalesce(e.payload::text, '')))
           OVER (ORDER BY e.seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
    FROM (SELECT seq, kind, payload, message_seq FROM events
           WHERE convo_id = $1 AND seq > $3 ORDER BY seq LIMIT $4) e
    LEFT JOIN messages m ON m.convo_id = $1 AND m.seq = e.message_seq
)
SELECT s.head, s.active, p.total::int AS total, p.seq, p.kind, p.payload,
       p.id, p.message_seq, p.sender_did, p.sender_device, p.message_type, p.epoch, p.ciphertext,
       ${iso("p.created_at")} AS created_at
  FROM s LEFT JOIN p ON p.before < $5
 ORDER BY p.seq`;

/**
 * Up to `limit` events after `afterSeq` (and about `maxBytes` of them: always at least one), with the
 * head and which of `readers` are active members, from one snapshot. It is the same page for every
 * reader, so it suits only readers already past their joining (live followers): `readEvents` stays the
 * per-reader read for a replay. A message event whose message retention removed is left out.
 */
export async function readSharedEvents(
  db: Queryable,
  convoId: string,
  readers: readonly string[],
  afterSeq: number,
  limit: number,
  maxBytes: number,
): Promise<SharedEventPage | undefined> {
  const rows = await db.query<SharedRow>(SHARED_EVENTS_SQL, [
    convoId,
    JSON.stringify(readers),
    afterSeq,
    limit,
    maxBytes,
  ]);
  const [first] = rows;
  if (!first) return undefined;
  const read = rows.filter((row) => row.seq !== null);
  const total = first.total ?? 0;
  return {
    head: first.head,
    active: new Set(first.active),
    events: eventsOf(read, convoId),
    cursor: read[read.length - 1]?.seq ?? afterSeq,
    more: read.length < total || total === limit,
  };
}
