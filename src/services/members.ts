import type { Queryable } from "../db/driver.js";
import { notCreator, notMember, tooManyMembers } from "../errors.js";
import { checkCommit, type CommitInput } from "./commits.js";
import { recordConvoChange } from "./convoChange.js";
import { lockConvo } from "./convoLock.js";

export interface MembershipResult {
  success: true;
  newEpoch: number;
}

export interface AddMembers {
  convoId: string;
  caller: string;
  dids: string[];
  commit?: CommitInput;
  welcome?: Uint8Array;
  keyPackageHashes: Map<string, string>;
  maxMembers: number;
  now: Date;
}

/**
 * Adds members under the conversation lock. Existing active members are left alone (no rows, no
 * error); former members rejoin, reading from this change on (the join position is the locked
 * conversation's next seq, event seq and epoch). New members get a welcome row each when a welcome is given.
 */
export async function addMembers(db: Queryable, request: AddMembers): Promise<MembershipResult> {
  return db.transaction(async (tx) => {
    const convo = await lockConvo(tx, request.convoId, request.caller);
    if (!convo.callerActive) throw notMember();
    const check = request.commit ? await checkCommit(tx, convo, request.commit) : undefined;
    if (check?.kind === "repeat") return { success: true, newEpoch: check.newEpoch };

    const candidates = request.dids.filter((did) => did !== request.caller);
    const [{ added = [] } = {}] = await tx.query<{ added: string[] | null }>(
      `SELECT coalesce(array_agg(d.did), '{}') AS added
         FROM jsonb_array_elements_text($2::text::jsonb) AS d(did)
        WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.convo_id = $1 AND m.did = d.did AND m.left_at IS NULL)`,
      [convo.id, JSON.stringify(candidates)],
    );
    const newcomers = added ?? [];
    if (convo.memberCount + newcomers.length > request.maxMembers) {
      throw tooManyMembers(`a conversation holds at most ${request.maxMembers} members`);
    }
    if (newcomers.length > 0) {
      const welcomes = request.welcome
        ? newcomers.map((did) => ({ did, hash: request.keyPackageHashes.get(did) ?? null }))
        : [];
      await tx.query(
        `WITH joined AS (
           INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch)
           SELECT $1, d.did, $3, c.next_seq, c.next_event_seq, c.epoch
             FROM jsonb_array_elements_text($2::text::jsonb) AS d(did), conversations c WHERE c.id = $1
           ON CONFLICT (convo_id, did) DO UPDATE SET joined_at = excluded.joined_at, left_at = NULL,
             joined_seq = excluded.joined_seq, joined_event_seq = excluded.joined_event_seq, joined_epoch = excluded.joined_epoch
         )
         INSERT INTO welcome_messages (id, convo_id, recipient_did, welcome, key_package_hash, created_at)
         SELECT gen_random_uuid()::text, $1, w.did, $4, w.hash, $3
           FROM jsonb_to_recordset($5::text::jsonb) AS w(did text, hash text)
         ON CONFLICT (convo_id, recipient_did) WHERE state IN ('available', 'in_flight') DO NOTHING`,
        [convo.id, JSON.stringify(newcomers), request.now, request.welcome ?? null, JSON.stringify(welcomes)],
      );
    }
    const newEpoch = await recordConvoChange(tx, convo, {
      sender: request.caller,
      commit: check && { bytes: request.commit!.bytes, epoch: check.epoch },
      membership: newcomers.map((did) => ({ type: "joined", did, actor: request.caller })),
      now: request.now,
    });
    return { success: true, newEpoch };
  });
}

export interface LeaveConvo {
  convoId: string;
  caller: string;
  target: string;
  commit?: CommitInput;
  admins: readonly string[];
  now: Date;
}

/**
 * Ends a membership: the caller's own, or (creator and admins only) someone else's. Leaving
 * twice leaves once and answers the same success.
 */
export async function leaveConvo(db: Queryable, request: LeaveConvo): Promise<MembershipResult> {
  return db.transaction(async (tx) => {
    const convo = await lockConvo(tx, request.convoId, request.caller);
    const self = request.target === request.caller;
    if (self && !convo.callerKnown) throw notMember();
    if (self && !convo.callerActive) return { success: true, newEpoch: convo.epoch };
    if (!self) {
      if (!convo.callerActive) throw notMember();
      if (request.caller !== convo.creatorDid && !request.admins.includes(request.caller)) throw notCreator();
    }
    const check = request.commit ? await checkCommit(tx, convo, request.commit) : undefined;
    if (check?.kind === "repeat") return { success: true, newEpoch: check.newEpoch };

    const left = await tx.query(
      `UPDATE members SET left_at = greatest(joined_at, $3) WHERE convo_id = $1 AND did = $2 AND left_at IS NULL RETURNING did`,
      [convo.id, request.target, request.now],
    );
    const newEpoch = await recordConvoChange(tx, convo, {
      sender: request.caller,
      commit: check && { bytes: request.commit!.bytes, epoch: check.epoch },
      membership: left.length ? [{ type: self ? "left" : "removed", did: request.target, actor: request.caller }] : [],
      now: request.now,
    });
    return { success: true, newEpoch };
  });
}
