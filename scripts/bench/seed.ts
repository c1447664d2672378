import type { Database } from "../../src/db/driver.js";

export const BENCH_SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

export const convoId = (n: number | string) => `bench-${n}`;
export const memberDid = (n: number | string) => `did:plc:bench${n}`;

/** Conversations bench-1..bench-N (and bench-hot), each with its creator as the only member. */
export async function seedConversations(db: Database, count: number): Promise<void> {
  await db.query(
    `WITH ids AS (
       SELECT n::text AS n FROM generate_series(1, $1) AS n UNION ALL SELECT 'hot'
     ), convo AS (
       INSERT INTO conversations (id, group_id, creator_did, cipher_suite, created_at)
       SELECT 'bench-' || n, md5('bench-' || n), 'did:plc:bench' || n, $2, now() FROM ids
     )
     INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch)
     SELECT 'bench-' || n, 'did:plc:bench' || n, now(), 1, 1, 0 FROM ids`,
    [count, BENCH_SUITE],
  );
}

/** A conversation `bench-read-<size>` holding `size` messages (seq 1..size), written in one statement. */
export async function seedReadConversation(db: Database, size: number): Promise<string> {
  const id = convoId(`read-${size}`);
  const did = memberDid(`read-${size}`);
  await db.query(
    `WITH convo AS (
       INSERT INTO conversations (id, group_id, creator_did, cipher_suite, created_at, next_seq, last_message_at)
       VALUES ($1, md5($1), $2, $3, now(), $4 + 1, now())
     ), member AS (
       INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch) VALUES ($1, $2, now(), 1, 1, 0)
     )
     INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at)
     SELECT gen_random_uuid()::text, $1, s, $2, 'app', 0, decode(repeat('ab', 100), 'hex'), now()
       FROM generate_series(1, $4) AS s`,
    [id, did, BENCH_SUITE, size],
  );
  await db.query("ANALYZE messages");
  return id;
}

/** A conversation `bench-fanout-<size>` whose members are did:plc:benchfanout<size>-1..size; returns its id and members. */
export async function seedFanoutConversation(
  db: Database,
  size: number,
): Promise<{ convoId: string; members: string[] }> {
  const id = convoId(`fanout-${size}`);
  const members = Array.from({ length: size }, (_, i) => memberDid(`fanout${size}-${i + 1}`));
  await db.query(
    `WITH convo AS (
       INSERT INTO conversations (id, group_id, creator_did, cipher_suite, created_at)
       VALUES ($1, md5($1), $2::text::jsonb ->> 0, $3, now())
     )
     INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch)
     SELECT $1, did, now(), 1, 1, 0 FROM jsonb_array_elements_text($2::text::jsonb) AS did`,
    [id, JSON.stringify(members), BENCH_SUITE],
  );
  return { convoId: id, members };
}
