import type { Queryable } from "../db/driver.js";
import { convoNotFound } from "../errors.js";

/** A conversation row locked for the rest of the transaction, with the caller's membership. */
export interface LockedConvo {
  id: string;
  groupId: string;
  cipherSuite: string;
  creatorDid: string;
  epoch: number;
  /** Created with a GroupInfo: its membership is the roster of its MLS tree. */
  rosterChecked: boolean;
  memberCount: number;
  /** The caller is an active member. */
  callerActive: boolean;
  /** The caller was a member once (active or left). */
  callerKnown: boolean;
}

/**
 * Locks the conversation row (`FOR UPDATE`): every change to members, epoch or seq of one
 * conversation happens under this lock, so they are totally ordered. 404 when it does not exist.
 *
 * Members are read by a second statement on purpose: a statement that waited for the lock still
 * reads other tables as of its own start (READ COMMITTED), so one statement would miss the
 * members a previous holder of the lock added or removed.
 */
export async function lockConvo(tx: Queryable, convoId: string, caller: string): Promise<LockedConvo> {
  const [convo] = await tx.query<{
    group_id: string;
    cipher_suite: string;
    creator_did: string;
    epoch: number;
    roster_checked: boolean;
  }>(`SELECT group_id, cipher_suite, creator_did, epoch, roster_checked FROM conversations WHERE id = $1 FOR UPDATE`, [
    convoId,
  ]);
  if (!convo) throw convoNotFound();
  const [members] = await tx.query<{ member_count: number; caller_left_at: Date | null; caller_known: boolean }>(
    `SELECT (SELECT count(*) FROM members m WHERE m.convo_id = $1 AND m.left_at IS NULL) AS member_count,
            me.left_at AS caller_left_at, me.did IS NOT NULL AS caller_known
       FROM (SELECT 1) AS one LEFT JOIN members me ON me.convo_id = $1 AND me.did = $2`,
    [convoId, caller],
  );
  return {
    id: convoId,
    groupId: convo.group_id,
    cipherSuite: convo.cipher_suite,
    creatorDid: convo.creator_did,
    epoch: convo.epoch,
    rosterChecked: convo.roster_checked,
    memberCount: members!.member_count,
    callerActive: members!.caller_known && members!.caller_left_at === null,
    callerKnown: members!.caller_known,
  };
}
