import type { Queryable } from "../db/driver.js";
import { convoExists, invalidRequest } from "../errors.js";
import { ACTIVE_MEMBERS_JSON, convoViewBytes, fitsPage, isActiveMember, iso } from "./sql.js";
import { upsertWelcomePayload, welcomePayloadHash } from "./welcomes.js";

export interface ConvoView {
  id: string;
  groupId: string;
  creator: string;
  members: { did: string; joinedAt: string }[];
  epoch: number;
  cipherSuite: string;
  createdAt: string;
  metadata?: { name?: string; description?: string };
}

interface ConvoRow {
  id: string;
  group_id: string;
  creator_did: string;
  cipher_suite: string;
  epoch: number;
  name: string | null;
  description: string | null;
  created_at: string;
  members: { did: string; joinedAt: string }[];
}

const CONVO_COLUMNS = `c.id, c.group_id, c.creator_did, c.cipher_suite, c.epoch, c.name, c.description,
  ${iso("c.created_at")} AS created_at, ${ACTIVE_MEMBERS_JSON} AS members`;

function toView(row: ConvoRow): ConvoView {
  const view: ConvoView = {
    id: row.id,
    groupId: row.group_id,
    creator: row.creator_did,
    members: row.members,
    epoch: row.epoch,
    cipherSuite: row.cipher_suite,
    createdAt: row.created_at,
  };
  if (row.name !== null || row.description !== null) {
    view.metadata = {
      ...(row.name !== null && { name: row.name }),
      ...(row.description !== null && { description: row.description }),
    };
  }
  return view;
}

export async function getConvoView(db: Queryable, convoId: string): Promise<ConvoView | undefined> {
  const [row] = await db.query<ConvoRow>(`SELECT ${CONVO_COLUMNS} FROM conversations c WHERE c.id = $1`, [convoId]);
  return row && toView(row);
}

export interface NewConvo {
  id: string;
  groupId: string;
  creator: string;
  cipherSuite: string;
  /** Initial members besides the creator, without duplicates. */
  members: string[];
  welcome?: Uint8Array;
  /** Key package hash per initial member, for the welcome rows. */
  keyPackageHashes: Map<string, string>;
  name?: string;
  description?: string;
  now: Date;
}

/**
 * Creates the conversation, its members, one welcome row per initial member (the bytes stored once) and a `joined`
 * event per member in one statement; every member reads it from its start. A repeat by the same
 * creator for the same groupId answers the existing conversation (natural idempotency) while that
 * creator is an active member; anyone else gets 409 ConvoExists and learns nothing more.
 */
export async function createConvo(db: Queryable, convo: NewConvo): Promise<ConvoView> {
  const everyone = [convo.creator, ...convo.members];
  const welcomes = convo.welcome
    ? convo.members.map((did) => ({ did, hash: convo.keyPackageHashes.get(did) ?? null }))
    : [];
  const [row] = await db.query<{ created: number }>(
    `WITH convo AS (
       INSERT INTO conversations (id, group_id, creator_did, cipher_suite, name, description, created_at, next_event_seq)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (group_id) DO NOTHING
       RETURNING id, epoch, next_seq
     ), joined AS (
       SELECT d.did, d.ordinality AS n FROM jsonb_array_elements_text($9::text::jsonb) WITH ORDINALITY AS d(did, ordinality)
     ), member_rows AS (
       INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch)
       SELECT convo.id, joined.did, $7, convo.next_seq, 1, convo.epoch FROM convo, joined
     ), payload AS (
       ${upsertWelcomePayload("$12", "$10", "$7", "WHERE $10::bytea IS NOT NULL AND EXISTS (SELECT 1 FROM convo)")}
     ), welcome_rows AS (
       INSERT INTO welcome_messages (id, convo_id, recipient_did, payload_hash, key_package_hash, created_at)
       SELECT gen_random_uuid()::text, convo.id, w.did, $12, w.hash, $7
         FROM convo, jsonb_to_recordset($11::text::jsonb) AS w(did text, hash text)
     ), event_rows AS (
       INSERT INTO events (convo_id, seq, kind, payload, created_at)
       SELECT convo.id, joined.n, 'membership', jsonb_build_object('type', 'joined', 'did', joined.did, 'epoch', 0), $7
         FROM convo, joined
     )
     SELECT (SELECT count(*) FROM convo) AS created`,
    [
      convo.id,
      convo.groupId,
      convo.creator,
      convo.cipherSuite,
      convo.name ?? null,
      convo.description ?? null,
      convo.now,
      everyone.length + 1,
      JSON.stringify(everyone),
      convo.welcome ?? null,
      JSON.stringify(welcomes),
      convo.welcome ? welcomePayloadHash(convo.welcome) : null,
    ],
  );
  const created = Number(row?.created) === 1;
  if (created) return (await getConvoView(db, convo.id))!;
  return existingConvo(db, convo.groupId, convo.creator);
}

/**
 * The answer to a createConvo whose groupId exists: the conversation for its active creator repeating the request,
 * 409 ConvoExists for anyone else, who learns nothing more.
 */
export async function existingConvo(db: Queryable, groupId: string, creator: string): Promise<ConvoView> {
  const [existing] = await db.query<{ id: string; caller_active: boolean }>(
    `SELECT c.id, ${isActiveMember("c.id", "$2")} AS caller_active
       FROM conversations c WHERE c.group_id = $1 AND c.creator_did = $2`,
    [groupId, creator],
  );
  if (!existing?.caller_active) throw convoExists();
  return (await getConvoView(db, existing.id))!;
}

export interface ConvoPage {
  conversations: ConvoView[];
  cursor?: string;
}

/**
 * The caller's active conversations, newest first, keyset-paginated on (createdAt, id), at most
 * `limit` and, past the first, at most `maxBytes` of JSON (a view grows with its members).
 */
export async function listConvos(
  db: Queryable,
  did: string,
  { limit, cursor, maxBytes }: { limit: number; cursor?: string; maxBytes: number },
): Promise<ConvoPage> {
  const after = cursor ? decodeConvoCursor(cursor) : undefined;
  const rows = await db.query<ConvoRow & { created_at_raw: Date; more: boolean }>(
    `WITH candidates AS (
       SELECT k.id, row_number() OVER w AS n, sum(${convoViewBytes("k")}) OVER w AS bytes
         FROM (SELECT c.* FROM members me JOIN conversations c ON c.id = me.convo_id
                WHERE me.did = $1 AND me.left_at IS NULL
                  AND ($2::timestamptz IS NULL OR (c.created_at, c.id) < ($2::timestamptz, $3::text))
                ORDER BY c.created_at DESC, c.id DESC
                LIMIT $4 + 1) k
       WINDOW w AS (ORDER BY k.created_at DESC, k.id DESC)
     ), page AS (
       SELECT id FROM candidates WHERE n <= $4 AND ${fitsPage("$5")}
     )
     SELECT ${CONVO_COLUMNS}, c.created_at AS created_at_raw,
            (SELECT count(*) FROM candidates) > (SELECT count(*) FROM page) AS more
       FROM page JOIN conversations c ON c.id = page.id
      ORDER BY c.created_at DESC, c.id DESC`,
    [did, after?.createdAt ?? null, after?.id ?? null, limit, maxBytes],
  );
  const last = rows[rows.length - 1];
  return {
    conversations: rows.map(toView),
    ...(last?.more && { cursor: encodeConvoCursor(last.created_at_raw, last.id) }),
  };
}

function encodeConvoCursor(createdAt: Date, id: string): string {
  return `${createdAt.toISOString()}_${id}`;
}

/** Exactly what encodeConvoCursor writes; the year range keeps the time inside what Postgres accepts. */
const CONVO_CURSOR = /^([1-9]\d{3}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)_(.+)$/s;

function decodeConvoCursor(cursor: string): { createdAt: Date; id: string } {
  const match = CONVO_CURSOR.exec(cursor);
  const createdAt = new Date(match?.[1] ?? Number.NaN);
  if (!match || Number.isNaN(createdAt.getTime())) throw invalidRequest("cursor is invalid");
  return { createdAt, id: match[2]! };
}
