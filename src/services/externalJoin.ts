import type { Queryable } from "../db/driver.js";
import { invalidGroupInfo, invalidRequest, rejoinCooldown, rosterMismatch } from "../errors.js";
import type { GroupInfoRead } from "../mls/groupInfo.js";
import type { CommitBundle } from "./commitBundle.js";
import { deviceKey, sameBytes, type Device, type RosterDiff, type RosterEntry } from "./roster.js";

/** What checkExternalJoin judges: the joining device, the new tree, the roster before it and their diff. */
export interface ExternalJoin {
  acting: Device;
  info: GroupInfoRead;
  before: RosterEntry[];
  diff: RosterDiff;
  bundle: CommitBundle;
}

/**
 * An external commit (sender new_member_commit): a device of an active member DID (the caller checked that) joins
 * by itself, as a new device or resyncing its former leaf (same signature key: MLS finds the former leaf by it).
 * Its new leaf signs the GroupInfo (400 InvalidGroupInfo), nothing else in the tree changes (400 RosterMismatch),
 * it carries no Welcome, and a device joins a conversation so at most once per REJOIN_COOLDOWN_SECONDS
 * (429 RejoinCooldown).
 * Returns the diff as it counts: a resync is the device removed and added, even when its new leaf is its old one.
 */
export async function checkExternalJoin(tx: Queryable, convoId: string, join: ExternalJoin): Promise<RosterDiff> {
  const { acting, info, before, diff, bundle } = join;
  const key = deviceKey(acting);
  if (bundle.welcome) throw invalidRequest("an external commit comes without a welcomeMessage");
  if (bundle.keyPackageHashes) throw invalidRequest("an external commit comes without keyPackageHashes");
  const mine = info.leaves.find((leaf) => deviceKey(leaf) === key);
  if (!mine) throw rosterMismatch("an external commit's new leaf must be the joining device's");
  if (mine.leafIndex !== info.signerLeaf) {
    throw invalidGroupInfo("an external commit's GroupInfo must be signed by the joining device's new leaf");
  }
  const former = before.find((entry) => deviceKey(entry) === key);
  if (former && !sameBytes(former.signatureKey, mine.signatureKey)) {
    throw rosterMismatch("a resync must keep the device's signature key; a device without it joins as a new device");
  }
  const other = (device: Device) => deviceKey(device) !== key;
  if (
    diff.added.some(other) ||
    diff.removed.some(other) ||
    diff.kept.some(({ before: was, after }) => other(after) && !sameBytes(was.signatureKey, after.signatureKey))
  ) {
    throw rosterMismatch("an external commit may change nothing in the tree but the joining device's own leaf");
  }
  await checkCooldown(tx, convoId, acting, bundle.now, bundle.rejoinCooldownSeconds);
  if (!former) return diff;
  return { added: [mine], removed: [former], kept: diff.kept.filter(({ after }) => other(after)) };
}

async function checkCooldown(
  tx: Queryable,
  convoId: string,
  acting: Device,
  now: Date,
  seconds: number,
): Promise<void> {
  const [last] = await tx.query<{ joined_at: Date }>(
    `SELECT joined_at FROM external_joins WHERE convo_id = $1 AND did = $2 AND device_id = $3`,
    [convoId, acting.did, acting.deviceId],
  );
  if (!last) return;
  const waitMs = new Date(last.joined_at).getTime() + seconds * 1000 - now.getTime();
  if (waitMs > 0) throw rejoinCooldown(Math.ceil(waitMs / 1000));
}

/** Starts the device's cooldown; under the conversation lock, so concurrent joins of one device are serialized. */
export async function recordExternalJoin(tx: Queryable, convoId: string, acting: Device, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO external_joins (convo_id, did, device_id, joined_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (convo_id, did, device_id) DO UPDATE SET joined_at = excluded.joined_at`,
    [convoId, acting.did, acting.deviceId, now],
  );
}
