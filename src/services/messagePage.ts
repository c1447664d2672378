import type { Queryable } from "../db/driver.js";
import { cursorExpired, invalidRequest, type XrpcError } from "../errors.js";
import { MAX_LIMIT } from "../schemas.js";
import { ACCESS_REFUSALS, type AccessRefusal } from "./membership.js";
import { fitsPage, iso, messageViewBytes } from "./sql.js";

/**
 * One getMessages page for an active member, as the answer's JSON text, in one statement: the
 * membership check, the starting point and the page come from one snapshot, and the database
 * builds the JSON, so the server never parses a row.
 *
 * $1 conversation, $2 reader, $3 the seq to read after (0: from the oldest kept), $4 limit, $5 bytes
 * past the first message; $6 a message id (the older `sinceMessage`) replaces $3 with its seq.
 * Messages start after that point and never before the reader's (latest) joining, in ascending seq,
 * keyset on (convo_id, seq). `refusal` names why there is no page; `body` is meaningless then.
 *
 * The candidates are at most MAX_LIMIT + 1, a constant: with `LIMIT $4 + 1` PostgreSQL priced the prepared
 * statement's generic plan for 10% of the conversation, found planning afresh cheaper and did so on every
 * read (a third of the statement's time). The ciphertext goes through the window and the CTE as stored
 * (a pointer to its TOAST when large): only the page's are read, by encode().
 *
 * The body is byte for byte `JSON.stringify` of `messageView`s (row_to_json and string_agg emit no
 * whitespace, and escape strings as JSON.stringify does); `bytesOut` is padded standard base64, and
 * encode() breaks it into lines of 76 characters, which are joined again.
 */
export const MESSAGE_PAGE_SQL = `WITH reader AS (
  SELECT c.next_seq, m.joined_seq,
         (SELECT min(x.seq) FROM messages x WHERE x.convo_id = c.id) AS first_kept,
         CASE WHEN $6::text IS NULL THEN $3::bigint
              ELSE (SELECT x.seq FROM messages x WHERE x.convo_id = c.id AND x.id = $6::text) END AS after
    FROM conversations c LEFT JOIN members m ON m.convo_id = c.id AND m.did = $2 AND m.left_at IS NULL
   WHERE c.id = $1
), state AS (
  SELECT CASE
           WHEN r.next_seq IS NULL THEN 'ConvoNotFound'
           WHEN r.joined_seq IS NULL THEN 'NotMember'
           WHEN r.after IS NULL AND coalesce(r.first_kept, r.next_seq) > 1 THEN 'SinceMessagePruned'
           WHEN r.after IS NULL THEN 'SinceMessageUnknown'
           WHEN r.after > 0 AND greatest(r.after, r.joined_seq - 1) + 1 < coalesce(r.first_kept, r.next_seq)
             THEN 'CursorExpired'
         END AS refusal,
         greatest(r.after, r.joined_seq - 1) AS after
    FROM (SELECT 1) AS one LEFT JOIN reader r ON true
), candidates AS (
  SELECT x.id, x.convo_id, x.sender_did, x.sender_device, x.ciphertext, x.epoch, x.seq, x.message_type, x.created_at,
         row_number() OVER w AS n, sum(${messageViewBytes("x")}) OVER w AS bytes
    FROM messages x
   WHERE x.convo_id = $1 AND x.seq > (SELECT after FROM state WHERE refusal IS NULL)
  WINDOW w AS (ORDER BY x.seq)
   ORDER BY x.seq LIMIT ${MAX_LIMIT + 1}
), page AS (
  SELECT * FROM candidates WHERE n <= $4 AND ${fitsPage("$5")}
), views AS (
  SELECT string_agg(row_to_json(v)::text, ',' ORDER BY v.seq) AS json, count(*) AS n, max(v.seq) AS last
    FROM (
      SELECT p.id, p.convo_id AS "convoId", p.sender_did AS "sender", p.sender_device AS "senderDevice",
             ('{"$bytes":"' || replace(encode(p.ciphertext, 'base64'), chr(10), '') || '"}')::json AS "ciphertext",
             p.epoch, p.seq, p.message_type AS "messageType", ${iso("p.created_at")} AS "createdAt"
        FROM page p
    ) v
)
SELECT state.refusal,
       '{"messages":[' || coalesce(views.json, '') || ']'
         || CASE WHEN EXISTS (SELECT 1 FROM candidates c WHERE c.n > views.n) THEN ',"cursor":"' || views.last || '"' ELSE '' END
         || '}' AS body
  FROM state, views`;

type Refusal = AccessRefusal | "SinceMessagePruned" | "SinceMessageUnknown" | "CursorExpired";

const REFUSALS: Record<Refusal, () => XrpcError> = {
  ...ACCESS_REFUSALS,
  // A message that is not there may have been removed by retention once any message of the conversation was.
  SinceMessagePruned: () => cursorExpired("sinceMessage names no message kept in this conversation"),
  SinceMessageUnknown: () => invalidRequest("sinceMessage names no message of this conversation"),
  CursorExpired: () =>
    cursorExpired("messages after this position were removed by retention; read again without a position"),
};

export interface MessagePage {
  convoId: string;
  /** The caller: 404 ConvoNotFound, 403 NotMember unless an active member of the conversation. */
  reader: string;
  /** Messages after this seq (a position the client holds, 1 or more, is checked against retention: 400 CursorExpired), or after this message. */
  after: number | { sinceMessage: string };
  /** At most MAX_LIMIT (the statement reads no more candidates). */
  limit: number;
  /** The page stops before this many bytes of JSON, but always holds its first message. */
  maxBytes: number;
}

/** The JSON text of `{messages, cursor?}`: `cursor` (the page's last seq) only when more messages follow. */
export async function messagePage(db: Queryable, request: MessagePage): Promise<string> {
  const { after } = request;
  if (request.limit > MAX_LIMIT) throw new RangeError(`a page holds at most ${MAX_LIMIT} messages`);
  const [row] = await db.query<{ refusal: Refusal | null; body: string }>(MESSAGE_PAGE_SQL, [
    request.convoId,
    request.reader,
    typeof after === "number" ? after : null,
    request.limit,
    request.maxBytes,
    typeof after === "number" ? null : after.sinceMessage,
  ]);
  if (!row) throw new Error("the page statement answers one row");
  if (row.refusal) throw REFUSALS[row.refusal]();
  return row.body;
}
