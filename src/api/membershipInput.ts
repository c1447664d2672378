import { invalidRequest } from "../errors.js";
import { readCommit, type CommitInput } from "../services/commits.js";

/** The optional commit of addMembers/leaveConvo, size-checked and read from its MLS framing with its `epoch` field. */
export function commitInput(
  commit: Uint8Array | undefined,
  epoch: number | undefined,
  maxBytes: number,
): CommitInput | undefined {
  if (!commit) return undefined;
  if (commit.byteLength < 1 || commit.byteLength > maxBytes) {
    throw invalidRequest(`commit must be 1 to ${maxBytes} bytes`);
  }
  return readCommit(commit, epoch);
}
