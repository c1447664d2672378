/**
 * The one-message-per-transaction keyed send as of commit 6edcf68 (SEND_MESSAGE_ONCE_SQL in
 * src/services/messages.ts, its SQL helpers inlined), kept as the baseline of scenarios 1 and 2: pgbench
 * runs it so the ratio shows what the server's own send gains over one message per commit, whatever
 * src/ runs now. Do not update it to follow src/.
 *
 * Parameters: $1 conversation, $2 sender, $3 epoch, $4 ciphertext, $5 idempotency key, $6 now,
 * $7 message id, $8 group id or NULL, $9 message type, $10 sender device ('' implicit), $11 opaque,
 * $12 method, $13 request hash, $14 key expiry, $15 lock_timeout (the longest wait for a held key).
 * The colons of the timestamp format are quoted (`":"`) so pgbench does not read them as variables.
 */
export const REFERENCE_SEND_SQL = `WITH wait AS (SELECT set_config('lock_timeout', $15, true) AS lock_timeout),
existing AS (
  SELECT k.request_hash, k.status_code, k.response, k.expires_at <= $6 AS expired
    FROM idempotency_keys k WHERE k.caller_did = $2 AND k.method = $12 AND k.key = $5
), conv AS (
  UPDATE conversations c
     SET next_seq = c.next_seq + 1,
         next_event_seq = c.next_event_seq + 1,
         last_message_at = greatest(c.last_message_at, $6)
   WHERE c.id = $1 AND c.epoch >= $3 AND ($8::text IS NULL OR c.group_id = $8)
     AND c.membership_version = (SELECT v.membership_version FROM conversations v WHERE v.id = $1)
     AND EXISTS (SELECT 1 FROM members m WHERE m.convo_id = c.id AND m.did = $2 AND m.left_at IS NULL)
     AND ($10::text = '' OR EXISTS (SELECT 1 FROM devices d WHERE d.did = $2 AND d.device_id = $10 AND d.revoked_at IS NULL))
     AND (NOT c.roster_checked
          OR (NOT $11::boolean AND EXISTS (SELECT 1 FROM roster r WHERE r.convo_id = c.id AND r.did = $2 AND r.device_id = $10)))
     AND NOT EXISTS (SELECT 1 FROM existing) AND (SELECT lock_timeout FROM wait) IS NOT NULL
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
        AND last_seen_at < $6::timestamptz - interval '1 minute'
        FOR NO KEY UPDATE SKIP LOCKED)
), answer AS (
  SELECT row_to_json(a)::text AS response FROM (
    SELECT m.id AS "messageId", m.seq AS "seq", $3::bigint AS "epoch", to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24":"MI":"SS.MS"Z"') AS "receivedAt" FROM message m
  ) a
), claim AS (
  INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
  SELECT $2, $12, $5, $13, 200, answer.response, $6, $14 FROM answer
)
SELECT true AS sent, response, NULL AS request_hash, 200 AS status_code, false AS expired FROM answer
UNION ALL
SELECT false, response, request_hash, status_code, expired FROM existing`;
