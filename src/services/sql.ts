/** SQL fragments shared by the services. */

/**
 * A timestamptz as the RFC 3339 UTC string the API returns (millisecond precision, like Date#toISOString).
 * The colons are quoted (`":"`) so pgbench, which reads `:name` as a variable, can run this SQL as the baseline.
 */
export const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24":"MI":"SS.MS"Z"')`;

/** The active members of conversation `c` as a JSON array of {did, joinedAt}. */
export const ACTIVE_MEMBERS_JSON = `(
  SELECT coalesce(json_agg(json_build_object('did', m.did, 'joinedAt', ${iso("m.joined_at")}) ORDER BY m.joined_at, m.did), '[]'::json)
  FROM members m WHERE m.convo_id = c.id AND m.left_at IS NULL
)`;

/*
 * JSON parameters are sent as text and cast (`$1::text::jsonb`): postgres.js would encode a
 * string again if the parameter's type were jsonb, and the text form means the same on every driver.
 */
