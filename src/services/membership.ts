import type { Queryable } from "../db/driver.js";
import { convoNotFound, notMember, type XrpcError } from "../errors.js";
import { isActiveMember } from "./sql.js";

/** Why a statement that checks its caller found nothing for them: no such conversation, or not an active member. */
export type AccessRefusal = "ConvoNotFound" | "NotMember";

/** The answers to those refusals: 404 and 403. */
export const ACCESS_REFUSALS: Record<AccessRefusal, () => XrpcError> = {
  ConvoNotFound: convoNotFound,
  NotMember: notMember,
};

export interface ConvoAccess {
  epoch: number;
  creatorDid: string;
  groupId: string;
}

const ACTIVE_MEMBER_SQL = `SELECT c.epoch, c.creator_did, c.group_id,
       ${isActiveMember("c.id", "$2")} AS is_member
  FROM conversations c WHERE c.id = $1`;

/**
 * The conversation as seen by an active member: 404 when it does not exist, 403 when the caller
 * is not (or no longer) a member. One round trip.
 */
export async function requireActiveMember(db: Queryable, convoId: string, did: string): Promise<ConvoAccess> {
  const [row] = await db.query<{ epoch: number; creator_did: string; group_id: string; is_member: boolean }>(
    ACTIVE_MEMBER_SQL,
    [convoId, did],
  );
  if (!row) throw convoNotFound();
  if (!row.is_member) throw notMember();
  return { epoch: row.epoch, creatorDid: row.creator_did, groupId: row.group_id };
}
