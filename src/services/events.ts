import { bytesOut } from "../bytes.js";
import type { Queryable } from "../db/driver.js";
import { convoNotFound, notMember } from "../errors.js";
import type { MembershipEvent } from "./convoChange.js";
import type { MessageView } from "./messages.js";
import { iso } from "./sql.js";

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
  /** True when the page was full, so more events may follow right away. */
  more: boolean;
}

interface EventRow {
  head: number;
  active: boolean;
  seq: number | null;
  kind: "message" | "membership" | null;
  payload: MembershipPayload | null;
  id: string | null;
  message_seq: number | null;
  sender_did: string;
  message_type: "app" | "commit" | "proposal";
  epoch: number;
  ciphertext: Uint8Array;
  created_at: string;
}

/**
 * The last committed event seq of a conversation the caller is an active member of: 404 when it
 * does not exist, 403 when the caller is not (or no longer) a member. One statement, so the
 * membership and the starting point come from the same snapshot.
 */
export async function eventHead(db: Queryable, convoId: string, caller: string): Promise<number> {
  const [row] = await db.query<{ head: number; active: boolean }>(
    `SELECT c.next_event_seq - 1 AS head,
            EXISTS (SELECT 1 FROM members m WHERE m.convo_id = c.id AND m.did = $2 AND m.left_at IS NULL) AS active
       FROM conversations c WHERE c.id = $1`,
    [convoId, caller],
  );
  if (!row) throw convoNotFound();
  if (!row.active) throw notMember();
  return row.head;
}

/**
 * Up to `limit` events after `afterSeq`, in seq order, with the head and the reader's membership
 * from the same snapshot; undefined when the conversation no longer exists. Event seqs are taken
 * under the conversation lock, so they commit in order: nothing after `afterSeq` can appear later.
 * A message event whose message retention already removed is left out.
 */
export async function readEvents(
  db: Queryable,
  convoId: string,
  reader: string,
  afterSeq: number,
  limit: number,
): Promise<EventPage | undefined> {
  const rows = await db.query<EventRow>(
    `SELECT s.head, s.active, e.seq, e.kind, e.payload,
            m.id, m.seq AS message_seq, m.sender_did, m.message_type, m.epoch, m.ciphertext,
            ${iso("m.created_at")} AS created_at
       FROM (SELECT c.next_event_seq - 1 AS head,
                    EXISTS (SELECT 1 FROM members r WHERE r.convo_id = c.id AND r.did = $2 AND r.left_at IS NULL) AS active
               FROM conversations c WHERE c.id = $1) s
       LEFT JOIN LATERAL (
         SELECT seq, kind, payload, message_seq FROM events
          WHERE convo_id = $1 AND seq > $3 ORDER BY seq LIMIT $4
       ) e ON true
       LEFT JOIN messages m ON m.convo_id = $1 AND m.seq = e.message_seq
      ORDER BY e.seq`,
    [convoId, reader, afterSeq, limit],
  );
  const [first] = rows;
  if (!first) return undefined;
  const events: ConvoEvent[] = [];
  for (const row of rows) {
    if (row.seq === null) continue;
    if (row.kind === "membership" && row.payload) {
      events.push({ seq: row.seq, kind: "membership", membership: row.payload });
    } else if (row.kind === "message" && row.id !== null && row.message_seq !== null) {
      events.push({
        seq: row.seq,
        kind: "message",
        message: {
          id: row.id,
          convoId,
          sender: row.sender_did,
          ciphertext: bytesOut(row.ciphertext),
          epoch: row.epoch,
          seq: row.message_seq,
          messageType: row.message_type,
          createdAt: row.created_at,
        },
      });
    }
  }
  const read = rows.filter((row) => row.seq !== null);
  return {
    head: first.head,
    active: first.active,
    events,
    cursor: read[read.length - 1]?.seq ?? afterSeq,
    more: read.length === limit,
  };
}
