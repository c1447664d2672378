import type { Queryable } from "../db/driver.js";
import { epochMismatch, invalidRequest, notCreator, notMember, tooManyMembers } from "../errors.js";
import { checkCommit, type CommitInput } from "./commits.js";
import { actorOf, recordConvoChange } from "./convoChange.js";
import { lockConvo } from "./convoLock.js";
import { checkWelcomeSuite, retireWelcomes, storeWelcomes, type WelcomeInput } from "./welcomes.js";
import { isActiveMember } from "./sql.js";

export interface MembershipResult {
  success: true;
  newEpoch: number;
}

export interface AddMembers {
  convoId: string;
  caller: string;
  /** The caller's acting device ("" for its implicit device): the commit's sender device and the events' actorDevice. */
  deviceId: string;
  dids: string[];
  commit?: CommitInput;
  welcome?: WelcomeInput;
  keyPackageHashes: Map<string, string>;
  maxMembers: number;
  now: Date;
}

/**
 * Adds members under the conversation lock. Existing active members are left alone (no rows, no
 * error); former members rejoin, reading from this change on (the join position is the locked
 * conversation's next seq, event seq and epoch). With a welcome, each new member gets a welcome row, and so does
 * an active member re-invited after a welcome that never led to a joining; it replaces their live one.
 */
export async function addMembers(db: Queryable, request: AddMembers): Promise<MembershipResult> {
  return db.transaction(async (tx) => {
    const convo = await lockConvo(tx, request.convoId, request.caller);
    if (!convo.callerActive) throw notMember();
    if (convo.rosterChecked) throw needsBundle(request.commit ? "a commit" : "adding members");
    if (request.welcome) checkWelcomeSuite(request.welcome, convo.cipherSuite);
    const check = request.commit ? await checkCommit(tx, convo, request.commit) : undefined;

    const candidates = request.dids.filter((did) => did !== request.caller);
    // Re-invited: active members whose latest welcome here failed (success: false) or expired unused.
    // A welcome still live and not reported failed is never replaced: that would let any member swap it.
    const [{ added = [], reinvited = [] } = {}] = await tx.query<{
      added: string[] | null;
      reinvited: string[] | null;
    }>(
      `SELECT coalesce(array_agg(d.did) FILTER (WHERE NOT d.active), '{}') AS added,
              coalesce(array_agg(d.did) FILTER (WHERE d.active AND d.last_welcome IN ('failed', 'expired')), '{}') AS reinvited
         FROM (SELECT d.did,
                      ${isActiveMember("$1", "d.did")} AS active,
                      (SELECT CASE WHEN w.state IN ('available', 'in_flight') AND w.error_details IS NOT NULL THEN 'failed'
                                   ELSE w.state END
                         FROM welcome_messages w WHERE w.convo_id = $1 AND w.recipient_did = d.did
                        ORDER BY w.created_at DESC, w.id DESC LIMIT 1) AS last_welcome
                 FROM jsonb_array_elements_text($2::text::jsonb) AS d(did)) d`,
      [convo.id, JSON.stringify(candidates)],
    );
    const newcomers = added ?? [];
    // The same commit bytes again answer success only if what this request asks is already so.
    if (check?.kind === "repeat") {
      if (newcomers.length > 0) throw epochMismatch(convo.epoch);
      return { success: true, newEpoch: check.newEpoch };
    }
    if (convo.memberCount + newcomers.length > request.maxMembers) {
      throw tooManyMembers(`a conversation holds at most ${request.maxMembers} members`);
    }
    if (newcomers.length > 0) {
      await tx.query(joinMembers("$1", "$2", "$3"), [convo.id, JSON.stringify(newcomers), request.now]);
    }
    if (request.welcome) {
      const recipients = [...newcomers, ...(reinvited ?? [])];
      const welcomes = recipients.map((did) => ({ did, hash: request.keyPackageHashes.get(did) ?? null }));
      await storeWelcomes(tx, convo.id, request.welcome.bytes, welcomes, request.now);
    }
    const actor = actorOf({ did: request.caller, deviceId: request.deviceId });
    const newEpoch = await recordConvoChange(tx, convo, {
      sender: request.caller,
      senderDevice: request.deviceId,
      commit: check && { bytes: request.commit!.bytes, epoch: check.epoch },
      membership: newcomers.map((did) => ({ type: "joined", did, ...actor })),
      now: request.now,
    });
    return { success: true, newEpoch };
  });
}

/**
 * An INSERT making the DIDs (a JSON array) members at `now`, new ones and former ones alike, reading from the
 * conversation's next seq, event seq and epoch on (parameters: convo id, DIDs, now). The caller holds the lock.
 */
export const joinMembers = (convoId: string, dids: string, now: string) =>
  `INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch)
   SELECT ${convoId}, d.did, ${now}, c.next_seq, c.next_event_seq, c.epoch
     FROM jsonb_array_elements_text(${dids}::text::jsonb) AS d(did), conversations c WHERE c.id = ${convoId}
   ON CONFLICT (convo_id, did) DO UPDATE SET joined_at = excluded.joined_at, left_at = NULL,
     joined_seq = excluded.joined_seq, joined_event_seq = excluded.joined_event_seq, joined_epoch = excluded.joined_epoch`;

/** In a roster-checked conversation the roster is the membership: it changes only with a commit and its GroupInfo. */
const needsBundle = (what: string) =>
  invalidRequest(`in a roster-checked conversation ${what} needs a commit with the groupInfo of the epoch it makes`);

export interface LeaveConvo {
  convoId: string;
  caller: string;
  /** The caller's acting device ("" for its implicit device). */
  deviceId: string;
  target: string;
  commit?: CommitInput;
  admins: readonly string[];
  now: Date;
}

/**
 * Ends a membership: the caller's own, or (creator and admins only) someone else's, and retires
 * the target's live welcome. Leaving twice leaves once and answers the same success.
 */
export async function leaveConvo(db: Queryable, request: LeaveConvo): Promise<MembershipResult> {
  // A former member's repeat takes no lock: its answer is the epoch it left at.
  if (request.target === request.caller) {
    const leftAt = await epochAtLeaving(db, request.convoId, request.caller);
    if (leftAt !== undefined) return { success: true, newEpoch: leftAt };
  }
  return db.transaction(async (tx) => {
    const convo = await lockConvo(tx, request.convoId, request.caller);
    const self = request.target === request.caller;
    if (self && !convo.callerKnown) throw notMember();
    if (self && !convo.callerActive) {
      // It left between the check above and the lock.
      return { success: true, newEpoch: (await epochAtLeaving(tx, convo.id, request.caller))! };
    }
    if (!self) {
      if (!convo.callerActive) throw notMember();
      if (convo.rosterChecked) throw needsBundle("removing a member");
      if (request.caller !== convo.creatorDid && !request.admins.includes(request.caller)) throw notCreator();
    }
    // Leaving by itself, the caller's departure is recorded at once; its leaves stay until a member commits.
    if (convo.rosterChecked && request.commit) throw needsBundle("a commit");
    const check = request.commit ? await checkCommit(tx, convo, request.commit) : undefined;
    if (check?.kind === "repeat") {
      // The same commit bytes again answer success only if the target is already gone.
      const [target] = await tx.query(`SELECT 1 FROM members WHERE convo_id = $1 AND did = $2 AND left_at IS NULL`, [
        convo.id,
        request.target,
      ]);
      if (target) throw epochMismatch(convo.epoch);
      return { success: true, newEpoch: check.newEpoch };
    }

    const left = await tx.query(
      `UPDATE members SET left_at = greatest(joined_at, $3) WHERE convo_id = $1 AND did = $2 AND left_at IS NULL RETURNING did`,
      [convo.id, request.target, request.now],
    );
    await retireWelcomes(tx, convo.id, [request.target], request.now);
    const actor = actorOf({ did: request.caller, deviceId: request.deviceId });
    const newEpoch = await recordConvoChange(tx, convo, {
      sender: request.caller,
      senderDevice: request.deviceId,
      commit: check && { bytes: request.commit!.bytes, epoch: check.epoch },
      membership: left.length ? [{ type: self ? "left" : "removed", did: request.target, ...actor }] : [],
      now: request.now,
    });
    return { success: true, newEpoch };
  });
}

/**
 * The epoch a former member's leaving is recorded at (the first left/removed event after its latest
 * joining; its joining epoch once retention removed that event), or undefined when `did` is an active
 * member or never was one. Never the conversation's current epoch, which a former member must not learn.
 */
async function epochAtLeaving(db: Queryable, convoId: string, did: string): Promise<number | undefined> {
  const [row] = await db.query<{ epoch: number }>(
    `SELECT coalesce(
       (SELECT (e.payload->>'epoch')::bigint FROM events e
         WHERE e.convo_id = m.convo_id AND e.seq >= m.joined_event_seq AND e.kind = 'membership'
           AND e.payload->>'did' = m.did AND e.payload->>'type' IN ('left', 'removed')
         ORDER BY e.seq LIMIT 1),
       m.joined_epoch) AS epoch
       FROM members m WHERE m.convo_id = $1 AND m.did = $2 AND m.left_at IS NOT NULL`,
    [convoId, did],
  );
  return row && Number(row.epoch);
}
