import type { Queryable } from "../db/driver.js";
import { epochMismatch, invalidCommit } from "../errors.js";
import { readMlsMessage, type MlsMessageInfo } from "../mls/message.js";
import type { LockedConvo } from "./convoLock.js";

/** A commit as read from its MLS framing. */
export interface CommitInput {
  bytes: Uint8Array;
  /** The epoch the commit was sent in, from its framing. */
  epoch: number;
  /** The MLS group id (lowercase hex), from its framing. */
  groupId: string;
  /** Its sender, for a PublicMessage (a PrivateMessage encrypts it). */
  sender?: MlsMessageInfo["sender"];
}

/**
 * Reads a commit (rule 3): an MLS PublicMessage or PrivateMessage whose clear-text content type is
 * `commit`. Its epoch comes from the framing and must agree with the request's `epoch` field, if
 * any. Anything else is 400 InvalidCommit, so no client can advance the epoch with bytes that are
 * not a commit.
 */
export function readCommit(bytes: Uint8Array, epochField: number | undefined): CommitInput {
  const mls = readMlsMessage(bytes);
  if (mls?.contentType !== "commit" || mls.groupId === undefined) {
    throw invalidCommit("commit must be an MLS PublicMessage or PrivateMessage with content type commit");
  }
  // readMlsMessage leaves out an epoch beyond Number.MAX_SAFE_INTEGER: no conversation is there.
  if (mls.epoch === undefined) throw invalidCommit(`the commit's epoch is beyond ${Number.MAX_SAFE_INTEGER}`);
  if (epochField !== undefined && epochField !== mls.epoch) {
    throw invalidCommit(`epoch field ${epochField} disagrees with the commit's epoch ${mls.epoch}`);
  }
  return { bytes, epoch: mls.epoch, groupId: mls.groupId, ...(mls.sender && { sender: mls.sender }) };
}

/** The result of checking a commit against the locked conversation. */
export type CommitCheck = { kind: "accept"; epoch: number } | { kind: "repeat"; newEpoch: number };

/**
 * One commit wins per epoch: a commit of this conversation's group for the current epoch is
 * accepted; the very same bytes already accepted for an earlier epoch are a harmless repeat
 * (natural idempotency); a commit of another group is 400 InvalidCommit; anything else is 409 EpochMismatch.
 */
export async function checkCommit(tx: Queryable, convo: LockedConvo, commit: CommitInput): Promise<CommitCheck> {
  if (commit.groupId !== convo.groupId) throw invalidCommit("commit belongs to another MLS group");
  if (commit.epoch === convo.epoch) return { kind: "accept", epoch: commit.epoch };
  if (commit.epoch < convo.epoch) {
    const [same] = await tx.query(
      `SELECT 1 FROM messages WHERE convo_id = $1 AND epoch = $2 AND message_type = 'commit' AND ciphertext = $3`,
      [convo.id, commit.epoch, commit.bytes],
    );
    if (same) return { kind: "repeat", newEpoch: commit.epoch + 1 };
  }
  throw epochMismatch(convo.epoch);
}
