/**
 * Helpers for the tests of requests that act as a device. Devices and rosters are written straight into their
 * tables: registerDevice and the roster path are built and tested elsewhere; these tests need only their rows.
 */
import type { Hono } from "hono";
import type { Queryable } from "../../src/db/driver.js";
import { tokenFor } from "../helpers/context.js";
import { opened, type OpenStream } from "../events/sseClient.js";

/** Registers devices of `did` (never revoked, last seen long ago). */
export async function registerDevices(db: Queryable, did: string, ...deviceIds: string[]): Promise<void> {
  for (const deviceId of deviceIds) {
    await db.query(
      `INSERT INTO devices (did, device_id, created_at, last_seen_at) VALUES ($1, $2, now() - interval '1 day', now() - interval '1 day')`,
      [did, deviceId],
    );
  }
}

export async function revokeDeviceRow(db: Queryable, did: string, deviceId: string): Promise<void> {
  await db.query(`UPDATE devices SET revoked_at = now() WHERE did = $1 AND device_id = $2`, [did, deviceId]);
}

/** Makes the conversation roster-checked with these devices as its leaves (in order: leaf 0, 1, ...). */
export async function rosterChecked(
  db: Queryable,
  convoId: string,
  leaves: { did: string; deviceId: string }[],
): Promise<void> {
  await db.query(`UPDATE conversations SET roster_checked = true WHERE id = $1`, [convoId]);
  await db.query(
    `INSERT INTO roster (convo_id, did, device_id, leaf_index, signature_key, added_epoch)
     SELECT $1, l.did, l.device_id, l.leaf_index, '\\x00'::bytea, 0
       FROM jsonb_to_recordset($2::text::jsonb) AS l(did text, device_id text, leaf_index int)`,
    [
      convoId,
      JSON.stringify(leaves.map(({ did, deviceId }, leaf) => ({ did, device_id: deviceId, leaf_index: leaf }))),
    ],
  );
}

/** Opens `did`'s event stream of the conversation, as `deviceId` when given, in process. */
export async function streamAs(
  app: Hono,
  did: string,
  convoId: string,
  { cursor, deviceId }: { cursor?: number; deviceId?: string } = {},
): Promise<OpenStream> {
  const search = new URLSearchParams({ convoId });
  if (cursor !== undefined) search.set("cursor", String(cursor));
  if (deviceId !== undefined) search.set("deviceId", deviceId);
  const headers = { Authorization: `Bearer ${await tokenFor(did)}` };
  return opened(await app.request(`/xrpc/blue.catbird.mls.streamConvoEvents?${search}`, { headers }));
}
