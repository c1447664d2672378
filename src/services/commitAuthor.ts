import type { Queryable } from "../db/driver.js";
import { invalidCommit, invalidGroupInfo, notMember, rosterMismatch } from "../errors.js";
import type { GroupInfoRead } from "../mls/groupInfo.js";
import { readPublicCommit } from "../mls/publicCommit.js";
import type { CommitBundle } from "./commitBundle.js";
import type { CommitInput } from "./commits.js";
import type { LockedConvo } from "./convoLock.js";
import { deviceKey, sameBytes, type Device, type RosterDiff, type RosterEntry } from "./roster.js";

/** Who made a commit, and whether what its framing shows agrees with the GroupInfo that came with it. */

/**
 * A member's commit: the acting device must be in the roster (403 NotMember), a PublicMessage's sender must be its
 * leaf, and the GroupInfo must be signed by that leaf, still holding the device with the signature key the roster
 * knows: only the committing device could have signed it.
 */
export function checkCommitter(commit: CommitInput, info: GroupInfoRead, before: RosterEntry[], acting: Device): void {
  const mine = before.find((entry) => deviceKey(entry) === deviceKey(acting));
  if (!mine) throw notMember();
  const leafIndex = commit.sender?.leafIndex;
  if (leafIndex !== undefined && leafIndex !== mine.leafIndex) {
    throw invalidCommit(`the commit's sender is leaf ${leafIndex}, not this device's leaf ${mine.leafIndex}`);
  }
  const signer = info.leaves.find((leaf) => leaf.leafIndex === info.signerLeaf);
  if (
    info.signerLeaf !== mine.leafIndex ||
    !signer ||
    deviceKey(signer) !== deviceKey(acting) ||
    !sameBytes(signer.signatureKey, mine.signatureKey)
  ) {
    throw invalidGroupInfo(
      `the GroupInfo must be signed by the committing device's leaf ${mine.leafIndex} with its key`,
    );
  }
}

/**
 * A commit sent as a PublicMessage shows more, and is checked further: its signature over the epoch's group context
 * must verify with the committing device's key (the roster's; for an external commit, the joiner's new leaf's, which
 * its update path must carry), and when it carries every proposal by value, those must be exactly the roster
 * change the GroupInfo shows (400 RosterMismatch otherwise). A PrivateMessage hides all of this.
 */
export async function checkPublicCommit(
  tx: Queryable,
  convo: LockedConvo,
  bundle: CommitBundle,
  {
    acting,
    external,
    before,
    info,
    diff,
  }: { acting: Device; external: boolean; before: RosterEntry[]; info: GroupInfoRead; diff: RosterDiff },
): Promise<void> {
  if (!bundle.commit.sender) return;
  const [stored] = await tx.query<{ group_info: Uint8Array }>(
    `SELECT group_info FROM group_infos WHERE convo_id = $1`,
    [convo.id],
  );
  const commit = stored && readPublicCommit(bundle.commit.bytes, new Uint8Array(stored.group_info));
  if (!commit) return;
  const isActing = (device: Device) => deviceKey(device) === deviceKey(acting);
  const signKey = (external ? info.leaves : before).find(isActing)!.signatureKey;
  if (external && !(commit.pathSignatureKey && sameBytes(commit.pathSignatureKey, signKey))) {
    throw invalidCommit("an external commit's update path must carry the joining device's new leaf");
  }
  if (!(await commit.verify(signKey))) {
    throw invalidCommit("the commit's signature does not verify with the committing device's key");
  }
  if (commit.byReference) return;
  const adds = diff.added.filter((leaf) => !(external && isActing(leaf))).map((leaf) => leaf.identity);
  const removes = diff.removed.map((entry) => entry.leafIndex);
  if (!sameMembers(commit.adds, adds) || !sameMembers(commit.removes, removes)) {
    throw rosterMismatch("the GroupInfo's tree is not the one the commit makes: its proposals change other devices");
  }
}

/** The same elements, each as often, in any order. */
function sameMembers<T extends string | number>(a: T[], b: T[]): boolean {
  const sortedA = [...a].sort();
  const sortedB = [...b].sort();
  return sortedA.length === sortedB.length && sortedA.every((value, i) => value === sortedB[i]);
}
