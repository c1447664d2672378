import type { Queryable } from "../db/driver.js";
import { epochMismatch, invalidRequest } from "../errors.js";
import { readMlsMessage } from "../mls/message.js";
import type { LockedConvo } from "./convoLock.js";

export interface CommitInput {
  bytes: Uint8Array;
  /** The `epoch` field of the request, if any. */
  epoch?: number;
}

/**
 * The epoch a commit is for: read from the MLS header when the bytes are an MLS message
 * (then it must agree with the `epoch` field and the conversation's group id), else the field.
 */
export function commitEpoch(convo: LockedConvo, commit: CommitInput): number {
  const mls = readMlsMessage(commit.bytes);
  if (mls && (mls.wireFormat === "public_message" || mls.wireFormat === "private_message")) {
    if (mls.groupId !== undefined && mls.groupId !== convo.groupId) {
      throw invalidRequest("commit belongs to another MLS group");
    }
    if (mls.epoch !== undefined) {
      if (commit.epoch !== undefined && commit.epoch !== mls.epoch) {
        throw invalidRequest(`epoch field ${commit.epoch} disagrees with the commit's epoch ${mls.epoch}`);
      }
      return mls.epoch;
    }
  }
  if (commit.epoch === undefined) throw invalidRequest("epoch is required with a commit that is not an MLS message");
  return commit.epoch;
}

/** The result of checking a commit against the locked conversation. */
export type CommitCheck = { kind: "accept"; epoch: number } | { kind: "repeat"; newEpoch: number };

/**
 * One commit wins per epoch: a commit for the current epoch is accepted; the very same bytes
 * already accepted for an earlier epoch are a harmless repeat (natural idempotency);
 * anything else is 409 EpochMismatch.
 */
export async function checkCommit(tx: Queryable, convo: LockedConvo, commit: CommitInput): Promise<CommitCheck> {
  const epoch = commitEpoch(convo, commit);
  if (epoch === convo.epoch) return { kind: "accept", epoch };
  if (epoch < convo.epoch) {
    const [same] = await tx.query(
      `SELECT 1 FROM messages WHERE convo_id = $1 AND epoch = $2 AND message_type = 'commit' AND ciphertext = $3`,
      [convo.id, epoch, commit.bytes],
    );
    if (same) return { kind: "repeat", newEpoch: epoch + 1 };
  }
  throw epochMismatch(convo.epoch);
}
