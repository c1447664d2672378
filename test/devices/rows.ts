/**
 * Rows the devices tests put in place directly: key packages of a device (publishing per device is another
 * branch's work), welcomes to a device and roster leaves (roster-checked commits are too).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Queryable } from "../../src/db/driver.js";

export const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

const HOUR = 3_600_000;

export interface KeyPackageRow {
  owner: string;
  deviceId: string;
  lastResort?: boolean;
  /** Handed out to this caller. */
  handedOutTo?: string;
}

/** Inserts a key package row (with a stand-in signature key, as packages stored since 0012 have); resolves to its hash. */
export async function insertKeyPackage(db: Queryable, row: KeyPackageRow, now = new Date()): Promise<string> {
  const bytes = randomBytes(32);
  const hash = createHash("sha256").update(bytes).digest("hex");
  await db.query(
    `INSERT INTO key_packages (owner_did, device_id, last_resort, cipher_suite, key_package, hash, expires_at, created_at,
                               handed_out_at, handed_out_to, signature_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '\\x00')`,
    [
      row.owner,
      row.deviceId,
      row.lastResort ?? false,
      SUITE,
      bytes,
      hash,
      new Date(now.getTime() + 24 * HOUR),
      now,
      row.handedOutTo ? now : null,
      row.handedOutTo ?? null,
    ],
  );
  return hash;
}

/** The hashes of the owner's key packages still stored, sorted. */
export async function keyPackageHashes(db: Queryable, owner: string): Promise<string[]> {
  const rows = await db.query<{ hash: string }>(`SELECT hash FROM key_packages WHERE owner_did = $1 ORDER BY hash`, [
    owner,
  ]);
  return rows.map((row) => row.hash);
}

export interface WelcomeRow {
  convoId: string;
  did: string;
  deviceId: string;
  state: "available" | "in_flight" | "consumed" | "expired";
  keyPackageHash?: string;
}

/** Inserts a welcome row with bytes of its own; resolves to its id. */
export async function insertWelcome(db: Queryable, row: WelcomeRow, now = new Date()): Promise<string> {
  const id = crypto.randomUUID();
  const fetched = row.state === "available" ? null : now;
  await db.query(
    `INSERT INTO welcome_messages (id, convo_id, recipient_did, recipient_device, welcome, key_package_hash, state,
                                   created_at, fetched_at, confirmed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [
      id,
      row.convoId,
      row.did,
      row.deviceId,
      randomBytes(16),
      row.keyPackageHash ?? null,
      row.state,
      now,
      fetched,
      row.state === "consumed" ? now : null,
    ],
  );
  return id;
}

/** The states of welcomes by id. */
export async function welcomeStates(db: Queryable, ids: string[]): Promise<Record<string, string>> {
  const rows = await db.query<{ id: string; state: string }>(
    `SELECT id, state FROM welcome_messages WHERE id IN (SELECT jsonb_array_elements_text($1::text::jsonb))`,
    [JSON.stringify(ids)],
  );
  return Object.fromEntries(rows.map((row) => [row.id, row.state]));
}

/** Puts devices into a conversation's roster as leaves 0, 1, ... */
export async function insertRoster(
  db: Queryable,
  convoId: string,
  leaves: { did: string; deviceId: string }[],
): Promise<void> {
  await db.query(
    `INSERT INTO roster (convo_id, did, device_id, leaf_index, signature_key, added_epoch)
     SELECT $1, l.did, l.device_id, l.leaf, decode(md5(l.did || l.device_id), 'hex'), 0
       FROM jsonb_to_recordset($2::text::jsonb) AS l(did text, device_id text, leaf int)`,
    [convoId, JSON.stringify(leaves.map(({ did, deviceId }, leaf) => ({ did, device_id: deviceId, leaf })))],
  );
}

/** The membership events of a conversation after event seq `after`, as stored. */
export async function membershipEvents(db: Queryable, convoId: string, after = 0): Promise<unknown[]> {
  const rows = await db.query<{ payload: unknown }>(
    `SELECT payload FROM events WHERE convo_id = $1 AND seq > $2 AND kind = 'membership' ORDER BY seq`,
    [convoId, after],
  );
  return rows.map((row) => row.payload);
}
