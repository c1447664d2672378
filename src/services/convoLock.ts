import type { Queryable } from "../db/driver.js";
import { convoNotFound } from "../errors.js";

/** A conversation row locked for the rest of the transaction, with the caller's membership. */
export interface LockedConvo {
  id: string;
  groupId: string;
  creatorDid: string;
  epoch: number;
  memberCount: number;
  /** The caller is an active member. */
  callerActive: boolean;
  /** The caller was a member once (active or left). */
  callerKnown: boolean;
}

/**
 * Locks the conversation row (`FOR UPDATE`): every change to members, epoch or seq of one
 * conversation happens under this lock, so they are totally ordered. 404 when it does not exist.
 */
export async function lockConvo(tx: Queryable, convoId: string, caller: string): Promise<LockedConvo> {
  const [row] = await tx.query<{
    group_id: string;
    creator_did: string;
    epoch: number;
    member_count: number;
    caller_left_at: Date | null;
    caller_known: boolean;
  }>(
    `SELECT c.group_id, c.creator_did, c.epoch,
            (SELECT count(*) FROM members m WHERE m.convo_id = c.id AND m.left_at IS NULL) AS member_count,
            me.left_at AS caller_left_at, me.did IS NOT NULL AS caller_known
       FROM conversations c
       LEFT JOIN members me ON me.convo_id = c.id AND me.did = $2
      WHERE c.id = $1
        FOR UPDATE OF c`,
    [convoId, caller],
  );
  if (!row) throw convoNotFound();
  return {
    id: convoId,
    groupId: row.group_id,
    creatorDid: row.creator_did,
    epoch: row.epoch,
    memberCount: row.member_count,
    callerActive: row.caller_known && row.caller_left_at === null,
    callerKnown: row.caller_known,
  };
}
