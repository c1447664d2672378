import type { Queryable } from "../db/driver.js";
import { toHex } from "../mls/decode.js";
import { readKeyPackage } from "../mls/keyPackage.js";

/** Packages examined per batch: verifying a P-521 package's signatures takes ~17 ms of CPU. */
export const SIGNATURE_KEY_BATCH = 100;

export interface SignatureKeyBatch {
  /** Packages read (the batch is full when this is the limit). */
  read: number;
  /** Of those, keyed or deleted (a row a live request held is left for the next run). */
  settled: number;
  /** The id to continue after. */
  lastId: string;
}

/**
 * Cleanup's share for key packages stored before migration 0012, which have no signature key and so vouch for no
 * roster leaf (an old client's user could not be added to a roster-checked conversation with them, and its stock
 * looks full, so it publishes no others). Reads at most `limit` of them after id `afterId`, oldest first, and stores
 * the signature key of each whose signatures verify (as publishing does today); the others are deleted: packages
 * are stored only when they verify, and no client could join with one. The bytes are checked between two short
 * statements, yielding to other work after each package; rows a live request holds are skipped, not waited for.
 */
export async function keyUnkeyedKeyPackages(db: Queryable, afterId: string, limit: number): Promise<SignatureKeyBatch> {
  const rows = await db.query<{ id: string; cipher_suite: string; key_package: Uint8Array }>(
    `SELECT id::text AS id, cipher_suite, key_package FROM key_packages
      WHERE signature_key IS NULL AND id > $1::bigint ORDER BY id LIMIT $2`,
    [afterId, limit],
  );
  if (rows.length === 0) return { read: 0, settled: 0, lastId: afterId };
  // Each package read: its verified signature key (hex), or null when it does not verify.
  const verdicts: { id: string; key: string | null }[] = [];
  for (const row of rows) {
    const read = readKeyPackage(row.key_package);
    const verifies = read?.cipherSuite === row.cipher_suite && (await read.verifySignatures());
    verdicts.push({ id: row.id, key: verifies ? toHex(read.signatureKey) : null });
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const [settled] = await db.query<{ count: number }>(
    `WITH verdict AS (
       SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS v(id bigint, key text)
     ), target AS (
       SELECT k.id, v.key FROM key_packages k JOIN verdict v ON v.id = k.id
        WHERE k.signature_key IS NULL
        ORDER BY k.id
          FOR UPDATE OF k SKIP LOCKED
     ), keyed AS (
       UPDATE key_packages k SET signature_key = decode(t.key, 'hex') FROM target t
        WHERE k.id = t.id AND t.key IS NOT NULL
       RETURNING 1
     ), deleted AS (
       DELETE FROM key_packages k USING target t WHERE k.id = t.id AND t.key IS NULL
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM keyed) + (SELECT count(*) FROM deleted) AS count`,
    [JSON.stringify(verdicts)],
  );
  return { read: rows.length, settled: Number(settled?.count ?? 0), lastId: rows[rows.length - 1]!.id };
}
