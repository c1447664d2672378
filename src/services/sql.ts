/** SQL fragments shared by the services. */

/**
 * A timestamptz as the RFC 3339 UTC string the API returns (millisecond precision, like Date#toISOString).
 * The colons are quoted (`":"`) so pgbench, which reads `:name` as a variable, can run this SQL as the baseline.
 */
export const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24":"MI":"SS.MS"Z"')`;

/** Whether `did` is an active member of conversation `convo` (both SQL expressions). */
export const isActiveMember = (convo: string, did: string) =>
  `EXISTS (SELECT 1 FROM members m WHERE m.convo_id = ${convo} AND m.did = ${did} AND m.left_at IS NULL)`;

/** Whether device `device` of `did` is in the roster (the MLS group) of conversation `convo`. */
export const isInRoster = (convo: string, did: string, device: string) =>
  `EXISTS (SELECT 1 FROM roster r WHERE r.convo_id = ${convo} AND r.did = ${did} AND r.device_id = ${device})`;

/** The active members of conversation `c` as a JSON array of {did, joinedAt}. */
export const ACTIVE_MEMBERS_JSON = `(
  SELECT coalesce(json_agg(json_build_object('did', m.did, 'joinedAt', ${iso("m.joined_at")}) ORDER BY m.joined_at, m.did), '[]'::json)
  FROM members m WHERE m.convo_id = c.id AND m.left_at IS NULL
)`;

/*
 * JSON parameters are sent as text and cast (`$1::text::jsonb`): postgres.js would encode a
 * string again if the parameter's type were jsonb, and the text form means the same on every driver.
 */

/**
 * An upper estimate of the JSON size of a message view of row `m` (its ciphertext as base64 plus
 * the other fields), computed without reading the bytes: octet_length of a stored bytea does not detoast it.
 */
export const messageViewBytes = (m: string) =>
  `(4 * ((octet_length(${m}.ciphertext) + 2) / 3) + octet_length(${m}.sender_did) + octet_length(${m}.sender_device)
    + octet_length(${m}.convo_id) + 256)`;

/** An upper estimate of the JSON size of the conversation view of row `c` (its active members dominate; 6 bytes a character of text covers JSON escapes). */
export const convoViewBytes = (c: string) => `(
  (SELECT coalesce(sum(octet_length(m.did) + 48), 0) FROM members m WHERE m.convo_id = ${c}.id AND m.left_at IS NULL)
  + octet_length(${c}.id) + octet_length(${c}.group_id) + octet_length(${c}.creator_did) + octet_length(${c}.cipher_suite)
  + 6 * (coalesce(octet_length(${c}.name), 0) + coalesce(octet_length(${c}.description), 0)) + 256
)`;

/**
 * Keeps the first rows of an ordered candidate list (`n` its 1-based position, `bytes` the running
 * total of its estimated size) that fit in `maxBytes`, and always the first one.
 */
export const fitsPage = (maxBytes: string) => `(n = 1 OR bytes <= ${maxBytes})`;
