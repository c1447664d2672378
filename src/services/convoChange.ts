import type { Queryable } from "../db/driver.js";
import { IMPLICIT_DEVICE } from "./actingDevice.js";
import type { LockedConvo } from "./convoLock.js";
import { byDid, type Device } from "./roster.js";

/**
 * A change of membership. `joined`/`left`/`removed` are about a DID (its first device arrived, it left, its last
 * device went); the `device*` types name one device of a roster-checked conversation (`deviceId`, "" for the
 * implicit device). `actorDevice` is the acting device when it is not the implicit one.
 */
export interface MembershipEvent {
  type: "joined" | "left" | "removed" | "deviceAdded" | "deviceRemoved" | "deviceRevoked";
  did: string;
  deviceId?: string;
  actor: string;
  actorDevice?: string;
}

export interface ConvoChange {
  sender: string;
  /** The device that sent the commit ("" or left out: the implicit device). */
  senderDevice?: string;
  /** An accepted commit: stored as the next message and advances the epoch by one. */
  commit?: { bytes: Uint8Array; epoch: number };
  membership: MembershipEvent[];
  now: Date;
}

/** What a recorded change did: the epoch after it, and the seq of its commit when it had one. */
export interface RecordedChange {
  newEpoch: number;
  seq?: number;
}

/** `recordChange`, answering the new epoch only. */
export async function recordConvoChange(tx: Queryable, convo: LockedConvo, change: ConvoChange): Promise<number> {
  return (await recordChange(tx, convo, change)).newEpoch;
}

/**
 * Writes what a membership change does to the locked conversation in one statement: advance
 * epoch and seq for an accepted commit, store the commit as a message (with its sender device), and append the
 * events (the commit's `message` event first, then the `membership` events in the order given).
 */
export async function recordChange(tx: Queryable, convo: LockedConvo, change: ConvoChange): Promise<RecordedChange> {
  const commits = change.commit ? 1 : 0;
  const newEpoch = convo.epoch + commits;
  const events = [
    ...(change.commit ? [{ kind: "message", payload: null }] : []),
    ...change.membership.map((event) => ({ kind: "membership", payload: { ...event, epoch: newEpoch } })),
  ];
  if (events.length === 0) return { newEpoch };
  const [row] = await tx.query<{ seq: number }>(
    `WITH conv AS (
       UPDATE conversations c
          SET epoch = c.epoch + $2,
              next_seq = c.next_seq + $2,
              next_event_seq = c.next_event_seq + $3,
              membership_version = c.membership_version + $10,
              last_message_at = CASE WHEN $2 = 1 THEN greatest(c.last_message_at, $4) ELSE c.last_message_at END
        WHERE c.id = $1
       RETURNING c.next_seq - 1 AS seq, c.next_event_seq - $3 AS first_event_seq, c.last_message_at
     ), commit_row AS (
       INSERT INTO messages (id, convo_id, seq, sender_did, sender_device, message_type, epoch, ciphertext, created_at)
       SELECT $5, $1, conv.seq, $6, $11, 'commit', $7, $8, conv.last_message_at FROM conv WHERE $2 = 1
     ), event_rows AS (
       INSERT INTO events (convo_id, seq, kind, message_seq, payload, created_at)
       SELECT $1, conv.first_event_seq + e.n - 1, e.value->>'kind',
              CASE WHEN e.value->>'kind' = 'message' THEN conv.seq END,
              CASE WHEN e.value->>'kind' = 'membership' THEN e.value->'payload' END,
              $4
         FROM conv, jsonb_array_elements($9::text::jsonb) WITH ORDINALITY AS e(value, n)
     )
     SELECT seq FROM conv`,
    [
      convo.id,
      commits,
      events.length,
      change.now,
      crypto.randomUUID(),
      change.sender,
      change.commit?.epoch ?? null,
      change.commit?.bytes ?? null,
      JSON.stringify(events),
      change.membership.length > 0 ? 1 : 0,
      change.senderDevice ?? "",
    ],
  );
  return { newEpoch, ...(commits === 1 && { seq: Number(row!.seq) }) };
}

/**
 * One membership event (no commit) appended to each of the conversations `convoIds`, in one statement whatever their
 * number: what `recordConvoChange` does for each (the next event seq, `membership_version` moved, the event at the
 * conversation's epoch). The caller holds their locks. Returns the ids it wrote to.
 */
export async function recordMembershipEverywhere(
  tx: Queryable,
  convoIds: string[],
  event: MembershipEvent,
  now: Date,
): Promise<string[]> {
  if (convoIds.length === 0) return [];
  const rows = await tx.query<{ id: string }>(
    `WITH conv AS (
       UPDATE conversations c
          SET next_event_seq = c.next_event_seq + 1, membership_version = c.membership_version + 1
        WHERE c.id IN (SELECT jsonb_array_elements_text($1::text::jsonb))
       RETURNING c.id, c.next_event_seq - 1 AS event_seq, c.epoch
     ), event_rows AS (
       INSERT INTO events (convo_id, seq, kind, message_seq, payload, created_at)
       SELECT conv.id, conv.event_seq, 'membership', NULL, $2::text::jsonb || jsonb_build_object('epoch', conv.epoch), $3
         FROM conv
     )
     SELECT id FROM conv ORDER BY id`,
    [JSON.stringify(convoIds), JSON.stringify(event), now],
  );
  return rows.map((row) => row.id);
}

/** A membership event's actor: the acting DID, and its device unless that is the implicit one. */
export const actorOf = ({ did, deviceId }: Device): Pick<MembershipEvent, "actor" | "actorDevice"> => ({
  actor: did,
  ...(deviceId !== IMPLICIT_DEVICE && { actorDevice: deviceId }),
});

/**
 * The membership events of a roster change, per DID: its `deviceRemoved` events, then `removed` when its last
 * device went while it was active; `joined` when its first device arrives, then its `deviceAdded` events.
 */
export function rosterEvents(change: {
  added: Device[];
  removed: Device[];
  joiners: string[];
  departed: string[];
  actor: Device;
}): MembershipEvent[] {
  const actor = actorOf(change.actor);
  const events: MembershipEvent[] = [];
  for (const [did, devices] of byDid(change.removed)) {
    for (const { deviceId } of devices) events.push({ type: "deviceRemoved", did, deviceId, ...actor });
    if (change.departed.includes(did)) events.push({ type: "removed", did, ...actor });
  }
  for (const [did, devices] of byDid(change.added)) {
    if (change.joiners.includes(did)) events.push({ type: "joined", did, ...actor });
    for (const { deviceId } of devices) events.push({ type: "deviceAdded", did, deviceId, ...actor });
  }
  return events;
}
