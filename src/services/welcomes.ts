import { sha256Hex } from "../bytes.js";
import type { Queryable } from "../db/driver.js";
import { invalidRequest, XrpcError } from "../errors.js";
import { IMPLICIT_DEVICE } from "./actingDevice.js";

export const welcomeNotFound = () => new XrpcError(404, "WelcomeNotFound", "no welcome for you in this conversation");
export const welcomeGone = () =>
  new XrpcError(410, "WelcomeGone", "the welcome was consumed or its grace period has passed");

/** A Welcome as the API read it: its bytes and the cipher suite it names. */
export interface WelcomeInput {
  bytes: Uint8Array;
  cipherSuite: string;
}

/** 400 when the Welcome was made for another cipher suite than the conversation's. */
export function checkWelcomeSuite(welcome: WelcomeInput, convoSuite: string): void {
  if (welcome.cipherSuite !== convoSuite) {
    throw invalidRequest(
      `welcomeMessage uses cipher suite ${welcome.cipherSuite}; the conversation uses ${convoSuite}`,
    );
  }
}

/**
 * An INSERT storing a Welcome's bytes once under their SHA-256 (parameters: hash text, bytes, now), `where`
 * deciding whether to. A payload already there is marked used at `now`, under its row lock, so cleanup
 * (which deletes only payloads unused since its cutoff) never deletes one a writer is about to reference.
 */
export const upsertWelcomePayload = (hash: string, bytes: string, now: string, where = "") =>
  `INSERT INTO welcome_payloads (hash, welcome, used_at) SELECT ${hash}::text, ${bytes}::bytea, ${now}::timestamptz ${where}
   ON CONFLICT (hash) DO UPDATE SET used_at = greatest(welcome_payloads.used_at, excluded.used_at)`;

/** The key a Welcome's bytes are stored under in welcome_payloads. */
export const welcomePayloadHash = (welcome: Uint8Array) => sha256Hex(welcome);

/** The clock a welcome is judged by: the grace period after its first fetch, its lifetime before one. */
export interface WelcomeTimes {
  now: Date;
  graceSeconds: number;
  ttlSeconds: number;
}

const LIVE = `state IN ('available', 'in_flight')`;

/** Past its time: fetched before the grace cutoff, or never fetched and created before the TTL cutoff. */
const pastTime = (graceCutoff: string, ttlCutoff: string) =>
  `((state = 'in_flight' AND fetched_at <= ${graceCutoff}) OR (state = 'available' AND created_at <= ${ttlCutoff}))`;
const STALE = pastTime("$4", "$5");

/**
 * CTEs `retired` and `retired_packages`: the welcomes whose ids the CTE `stale` lists become
 * `expired`, and the key package each was built from is consumed at $3 (MLS never reuses one;
 * a last-resort package is the exception: it is never consumed).
 */
const RETIRE = `retired AS (
    UPDATE welcome_messages w SET state = 'expired' FROM stale s WHERE w.id = s.id
    RETURNING w.recipient_did, w.key_package_hash
  ), retired_packages AS (
    UPDATE key_packages k SET consumed_at = $3 FROM retired r
     WHERE k.owner_did = r.recipient_did AND k.hash = r.key_package_hash AND k.consumed_at IS NULL AND NOT k.last_resort
  )`;

/** The device a welcome is for: welcomes are per device ("" for the DID's implicit device). */
export interface WelcomeRecipient {
  did: string;
  deviceId: string;
}

/**
 * The recipient device's live welcome, locked, split into `stale` (retired in the same statement) and
 * `fresh` (what `action`, a CTE over `fresh`, may act on). Parameters: $1 convo, $2 recipient DID,
 * $3 now, $4 grace cutoff, $5 TTL cutoff, $6 recipient device, then the action's own.
 */
const onLiveWelcome = (action: string) => `WITH live AS (
    SELECT id, state, fetched_at, created_at FROM welcome_messages
     WHERE convo_id = $1 AND recipient_did = $2 AND recipient_device = $6 AND ${LIVE}
       FOR UPDATE
  ), stale AS (
    SELECT id FROM live WHERE ${STALE}
  ), fresh AS (
    SELECT id FROM live WHERE NOT ${STALE}
  ), ${RETIRE}, ${action}`;

const cutoffs = ({ now, graceSeconds, ttlSeconds }: WelcomeTimes) => [
  now,
  new Date(now.getTime() - graceSeconds * 1000),
  new Date(now.getTime() - ttlSeconds * 1000),
];

/**
 * Phase one: hands out the recipient device's live welcome and marks it in flight. A re-fetch within
 * the grace period returns the same bytes; concurrent fetches serialize on the row lock and
 * leave one in-flight row. The grace period and the TTL are enforced here, in the statement
 * that reads the welcome: a welcome past either expires and answers 410.
 */
export async function fetchWelcome(
  db: Queryable,
  convoId: string,
  recipient: WelcomeRecipient,
  times: WelcomeTimes,
): Promise<Uint8Array> {
  const [row] = await db.query<{ welcome: Uint8Array | null }>(
    `${onLiveWelcome(`fetched AS (
       UPDATE welcome_messages w SET state = 'in_flight', fetched_at = coalesce(w.fetched_at, $3)
         FROM fresh WHERE w.id = fresh.id
       RETURNING w.welcome, w.payload_hash
     )`)}
     SELECT (SELECT coalesce(f.welcome, p.welcome) FROM fetched f LEFT JOIN welcome_payloads p ON p.hash = f.payload_hash) AS welcome`,
    [convoId, recipient.did, ...cutoffs(times), recipient.deviceId],
  );
  if (row?.welcome) return row.welcome;
  throw (await latestState(db, convoId, recipient)) === undefined ? welcomeNotFound() : welcomeGone();
}

/**
 * Phase two: `success` consumes the welcome and its key package; a failure records the details
 * and leaves it fetchable until the grace period ends. Confirming a consumed welcome again is fine;
 * a welcome past its grace period or TTL is gone (410), here as in `fetchWelcome`.
 */
export async function confirmWelcome(
  db: Queryable,
  convoId: string,
  recipient: WelcomeRecipient,
  outcome: { success: boolean; errorDetails?: string },
  times: WelcomeTimes,
): Promise<{ confirmed: boolean }> {
  const action = outcome.success
    ? `done AS (
         UPDATE welcome_messages w
            SET state = 'consumed', confirmed_at = $3, fetched_at = coalesce(w.fetched_at, $3),
                error_details = coalesce($7, w.error_details)
           FROM fresh WHERE w.id = fresh.id
         RETURNING w.recipient_did, w.key_package_hash
       ), consumed AS (
         UPDATE key_packages k SET consumed_at = $3
           FROM done d WHERE k.owner_did = d.recipient_did AND k.hash = d.key_package_hash AND k.consumed_at IS NULL AND NOT k.last_resort
       )`
    : `done AS (
         UPDATE welcome_messages w SET error_details = $7 FROM fresh WHERE w.id = fresh.id RETURNING 1
       )`;
  const [row] = await db.query<{ done: number }>(`${onLiveWelcome(action)} SELECT count(*) AS done FROM done`, [
    convoId,
    recipient.did,
    ...cutoffs(times),
    recipient.deviceId,
    outcome.errorDetails ?? null,
  ]);
  if (Number(row?.done) > 0) return { confirmed: outcome.success };
  // A fresh snapshot: a concurrent confirm may have consumed it while this one waited for the lock.
  const last = await latestState(db, convoId, recipient);
  if (last === undefined) throw welcomeNotFound();
  if (last === "consumed") return { confirmed: true };
  throw welcomeGone();
}

/**
 * Stores one welcome row per recipient device (with the key package it was built from) and the bytes once,
 * replacing that device's older live welcome (a welcome belongs to one membership); the DID's other devices keep
 * theirs. Call it inside the transaction that holds the conversation lock.
 */
export async function storeWelcomes(
  tx: Queryable,
  convoId: string,
  welcome: Uint8Array,
  recipients: { did: string; deviceId?: string; hash: string | null }[],
  now: Date,
): Promise<void> {
  if (recipients.length === 0) return;
  const devices = recipients.map(({ did, deviceId = IMPLICIT_DEVICE }) => ({ did, deviceId }));
  await retireConvoDeviceWelcomes(tx, convoId, devices, now);
  const rows = JSON.stringify(
    recipients.map(({ did, deviceId, hash }) => ({ did, device_id: deviceId ?? IMPLICIT_DEVICE, hash })),
  );
  await tx.query(
    `WITH payload AS (${upsertWelcomePayload("$5", "$2", "$3")})
     INSERT INTO welcome_messages (id, convo_id, recipient_did, recipient_device, payload_hash, key_package_hash, created_at)
     SELECT gen_random_uuid()::text, $1, w.did, w.device_id, $5, w.hash, $3
       FROM jsonb_to_recordset($4::text::jsonb) AS w(did text, device_id text, hash text)`,
    [convoId, welcome, now, rows, welcomePayloadHash(welcome)],
  );
}

/** Retires the live welcomes `where` selects (over $1 and $2; $3 is now), locking them; answers how many. */
async function retireLive(db: Queryable, where: string, params: [unknown, unknown, Date]): Promise<number> {
  const rows = await db.query(
    `WITH stale AS (SELECT id FROM welcome_messages WHERE ${where} AND ${LIVE} FOR UPDATE), ${RETIRE}
     SELECT 1 FROM retired`,
    params,
  );
  return rows.length;
}

/** Retires the live welcomes of all the recipients' devices in the conversation (they left or were removed). */
export async function retireWelcomes(db: Queryable, convoId: string, recipients: string[], now: Date): Promise<number> {
  return retireLive(db, `convo_id = $1 AND recipient_did IN (SELECT jsonb_array_elements_text($2::text::jsonb))`, [
    convoId,
    JSON.stringify(recipients),
    now,
  ]);
}

/** Retires the live welcomes of these devices in the conversation (their leaves left its roster). */
export async function retireConvoDeviceWelcomes(
  db: Queryable,
  convoId: string,
  devices: WelcomeRecipient[],
  now: Date,
): Promise<number> {
  if (devices.length === 0) return 0;
  return retireLive(
    db,
    `convo_id = $1 AND (recipient_did, recipient_device) IN (
       SELECT r.did, r.device_id FROM jsonb_to_recordset($2::text::jsonb) AS r(did text, device_id text))`,
    [convoId, JSON.stringify(devices.map(({ did, deviceId }) => ({ did, device_id: deviceId }))), now],
  );
}

/** Retires one device's live welcomes in every conversation (it was revoked). */
export async function retireDeviceWelcomes(db: Queryable, did: string, deviceId: string, now: Date): Promise<number> {
  return retireLive(db, `recipient_did = $1 AND recipient_device = $2`, [did, deviceId, now]);
}

/**
 * Cleanup's share: expires at most `limit` welcomes past their grace period or TTL, skipping rows
 * a live request holds. One statement, so one short transaction. Returns how many expired.
 */
export async function expireStaleWelcomes(db: Queryable, times: WelcomeTimes, limit: number): Promise<number> {
  const [, graceCutoff, ttlCutoff] = cutoffs(times);
  const [row] = await db.query<{ expired: number }>(
    `WITH stale AS (
       SELECT id FROM welcome_messages WHERE ${pastTime("$1", "$2")}
        LIMIT $4 FOR UPDATE SKIP LOCKED
     ), ${RETIRE}
     SELECT count(*) AS expired FROM retired`,
    [graceCutoff, ttlCutoff, times.now, limit],
  );
  return Number(row?.expired ?? 0);
}

/**
 * Cleanup's share: deletes at most `limit` payloads no welcome row references and unused since `cutoff`,
 * skipping rows a writer holds. Returns how many.
 */
export async function deleteUnusedWelcomePayloads(db: Queryable, cutoff: Date, limit: number): Promise<number> {
  const [row] = await db.query<{ deleted: number }>(
    `WITH gone AS (
       DELETE FROM welcome_payloads WHERE hash IN (
         SELECT p.hash FROM welcome_payloads p
          WHERE p.used_at <= $1 AND NOT EXISTS (SELECT 1 FROM welcome_messages w WHERE w.payload_hash = p.hash)
          ORDER BY p.used_at LIMIT $2 FOR UPDATE SKIP LOCKED
       ) RETURNING 1
     ) SELECT count(*) AS deleted FROM gone`,
    [cutoff, limit],
  );
  return Number(row?.deleted ?? 0);
}

async function latestState(db: Queryable, convoId: string, recipient: WelcomeRecipient): Promise<string | undefined> {
  const [row] = await db.query<{ state: string }>(
    `SELECT state FROM welcome_messages WHERE convo_id = $1 AND recipient_did = $2 AND recipient_device = $3
      ORDER BY created_at DESC, id DESC LIMIT 1`,
    [convoId, recipient.did, recipient.deviceId],
  );
  return row?.state;
}
