/**
 * Rule 3 (epochs) on real Postgres: a commit is accepted only for the current epoch, one per epoch wins even
 * under concurrency, each advances the epoch by one; the very same commit again is the same success (rule 4);
 * application messages may not run ahead of the conversation; real MLS bytes carry the epoch and group id.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit } from "../helpers/mls.js";
import { base64, expectReply, range, storedMessages, Xrpc, type Reply } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Xrpc(testApp(db).app);

async function currentEpoch(did: string, convoId: string): Promise<number> {
  const reply = await api.get(did, "getEpoch", { convoId });
  expectReply(reply, 200);
  return reply.body.currentEpoch as number;
}

async function commitRows(convoId: string) {
  return (await storedMessages(db, convoId)).filter((row) => row.message_type === "commit");
}

/** Exactly one winner; everyone else 409 EpochMismatch naming the epoch the winner moved the conversation to. */
function expectOneWinner(replies: Reply[], newEpoch: number): number {
  const winners = replies.flatMap((reply, i) => (reply.status === 200 ? [i] : []));
  expect(winners).toHaveLength(1);
  expect(replies[winners[0]!]!.body).toEqual({ success: true, newEpoch });
  for (const reply of replies.filter((reply) => reply.status !== 200)) {
    expectReply(reply, 409, "EpochMismatch");
    expect(reply.body.message).toContain(`epoch ${newEpoch}`);
  }
  return winners[0]!;
}

async function addWithCommit(creator: string, convoId: string, epoch: number, bytes = `commit ${epoch}`) {
  const reply = await api.post(creator, "addMembers", {
    convoId,
    didList: [unique("did:plc:new")],
    commit: base64(bytes),
    epoch,
  });
  expectReply(reply, 200);
  return reply;
}

describe("one commit per epoch", () => {
  it("accepts exactly one of 20 concurrent addMembers commits for the same epoch", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice, [unique("did:plc:bob")]);
    const newcomers = range(1, 20).map(() => unique("did:plc:new"));

    const replies = await Promise.all(
      newcomers.map((did, i) =>
        api.post(alice, "addMembers", { convoId, didList: [did], commit: base64(`commit #${i}`), epoch: 0 }),
      ),
    );

    const winner = expectOneWinner(replies, 1);
    expect(await currentEpoch(alice, convoId)).toBe(1);
    const commits = await commitRows(convoId);
    expect(commits).toHaveLength(1);
    expect(commits[0]).toMatchObject({ epoch: 0, sender_did: alice, seq: 1 });
    expect(Buffer.from(commits[0]!.ciphertext).toString()).toBe(`commit #${winner}`);
    // The losers' members were rolled back with their commits.
    const joined = await db.query<{ did: string }>(
      `SELECT did FROM members WHERE convo_id = $1 AND did = ANY($2::text[])`,
      [convoId, newcomers],
    );
    expect(joined.map((row) => row.did)).toEqual([newcomers[winner]]);
  });

  it("accepts exactly one of 20 concurrent leaveConvo commits for the same epoch", async () => {
    const alice = unique("did:plc:alice");
    const members = range(1, 20).map(() => unique("did:plc:member"));
    const convoId = await api.createConvo(alice, members);
    await addWithCommit(alice, convoId, 0);

    const replies = await Promise.all(
      members.map((did, i) => api.post(did, "leaveConvo", { convoId, commit: base64(`leave #${i}`), epoch: 1 })),
    );

    const winner = expectOneWinner(replies, 2);
    expect(await currentEpoch(alice, convoId)).toBe(2);
    const commits = await commitRows(convoId);
    expect(commits.map((row) => [row.epoch, Buffer.from(row.ciphertext).toString()])).toEqual([
      [0, "commit 0"],
      [1, `leave #${winner}`],
    ]);
    const left = await db.query<{ did: string }>(
      `SELECT did FROM members WHERE convo_id = $1 AND left_at IS NOT NULL`,
      [convoId],
    );
    expect(left.map((row) => row.did)).toEqual([members[winner]]);
  });

  it("accepts exactly one of 20 concurrent removals by the creator with commits for the same epoch", async () => {
    const alice = unique("did:plc:alice");
    const members = range(1, 20).map(() => unique("did:plc:member"));
    const convoId = await api.createConvo(alice, members);

    const replies = await Promise.all(
      members.map((did, i) =>
        api.post(alice, "leaveConvo", { convoId, targetDid: did, commit: base64(`remove #${i}`), epoch: 0 }),
      ),
    );

    const winner = expectOneWinner(replies, 1);
    expect(await commitRows(convoId)).toHaveLength(1);
    const active = await api.get(members[winner]!, "getEpoch", { convoId });
    expectReply(active, 403, "NotMember");
  });

  it("refuses commits for a past or future epoch and needs an epoch for non-MLS bytes", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    await addWithCommit(alice, convoId, 0);
    await addWithCommit(alice, convoId, 1);

    for (const epoch of [0, 1, 3, 100]) {
      const reply = await api.post(alice, "addMembers", {
        convoId,
        didList: [unique("did:plc:new")],
        commit: base64(`another commit for ${epoch}`),
        epoch,
      });
      expectReply(reply, 409, "EpochMismatch");
      expect(reply.body.message).toContain("epoch 2");
    }
    const noEpoch = await api.post(alice, "addMembers", {
      convoId,
      didList: [unique("did:plc:new")],
      commit: base64("opaque"),
    });
    expectReply(noEpoch, 400, "InvalidRequest");
    expect(await currentEpoch(alice, convoId)).toBe(2);
    expect((await commitRows(convoId)).map((row) => row.epoch)).toEqual([0, 1]);
  });

  it("answers the very same commit again with the same success and stores it once", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice);
    const body = { convoId, didList: [bob], commit: base64("the commit"), epoch: 0 };

    const first = await api.post(alice, "addMembers", body);
    expectReply(first, 200);
    expect(first.body).toEqual({ success: true, newEpoch: 1 });
    const again = await api.post(alice, "addMembers", body);
    expect(again.body).toEqual(first.body);
    // Still the same answer after the conversation moved on, and ten concurrent repeats too.
    await addWithCommit(alice, convoId, 1);
    const repeats = await Promise.all(range(1, 10).map(() => api.post(alice, "addMembers", body)));
    for (const reply of repeats) expect(reply.body).toEqual(first.body);

    expect(await currentEpoch(alice, convoId)).toBe(2);
    expect((await commitRows(convoId)).map((row) => row.epoch)).toEqual([0, 1]);
    // A repeated leave commit is the same success too.
    const leave = { convoId, commit: base64("bob leaves"), epoch: 2 };
    const left = await api.post(bob, "leaveConvo", leave);
    expect(left.body).toEqual({ success: true, newEpoch: 3 });
    expect((await api.post(bob, "leaveConvo", leave)).body).toEqual(left.body);
    expect((await commitRows(convoId)).map((row) => row.epoch)).toEqual([0, 1, 2]);
  });

  it("accepts the same commit bytes sent concurrently as one commit", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    const body = { convoId, didList: [unique("did:plc:bob")], commit: base64("same bytes"), epoch: 0 };

    const replies = await Promise.all(range(1, 20).map(() => api.post(alice, "addMembers", body)));

    for (const reply of replies) expect(reply.body).toEqual({ success: true, newEpoch: 1 });
    expect(await commitRows(convoId)).toHaveLength(1);
    expect(await currentEpoch(alice, convoId)).toBe(1);
  });
});

describe("application messages and epochs", () => {
  it("refuses a message for a future epoch and accepts the current and past ones", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);
    const send = (epoch: number) => api.post(bob, "sendMessage", { convoId, ciphertext: base64("hi"), epoch });

    const ahead = await send(1);
    expectReply(ahead, 409, "EpochMismatch");
    expect(ahead.body.message).toContain("epoch 0");
    expectReply(await send(0), 200);

    await addWithCommit(alice, convoId, 0);
    await addWithCommit(alice, convoId, 1);
    for (const epoch of [0, 1, 2]) {
      const reply = await send(epoch);
      expectReply(reply, 200);
      expect(reply.body.epoch).toBe(epoch);
    }
    expectReply(await send(3), 409, "EpochMismatch");
    expectReply(await send(Number.MAX_SAFE_INTEGER), 409, "EpochMismatch");

    const stored = (await storedMessages(db, convoId)).filter((row) => row.message_type === "app");
    expect(stored.map((row) => row.epoch)).toEqual([0, 0, 1, 2]);
  });

  it("lets no message through ahead of an epoch that concurrent commits are still moving", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);

    // Messages for epochs 0..5 race five commits; each message is stored only if its epoch was reached.
    const commits = (async () => {
      for (let epoch = 0; epoch < 5; epoch++) await addWithCommit(alice, convoId, epoch);
    })();
    const sends = Promise.all(
      range(0, 59).map((n) => api.post(bob, "sendMessage", { convoId, ciphertext: base64(`m${n}`), epoch: n % 6 })),
    );
    await commits;
    const replies = await sends;

    for (const reply of replies) expect([200, 409]).toContain(reply.status);
    const rows = await storedMessages(db, convoId);
    expect(rows.map((row) => row.seq)).toEqual(range(1, rows.length));
    let epoch = 0;
    for (const row of rows) {
      if (row.message_type === "commit") epoch = row.epoch + 1;
      else expect(row.epoch).toBeLessThanOrEqual(epoch);
    }
  });
});

describe("getCommits", () => {
  it("returns the commits in the epoch range, oldest first", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);
    for (let epoch = 0; epoch < 6; epoch++) {
      await addWithCommit(alice, convoId, epoch);
      expectReply(await api.post(bob, "sendMessage", { convoId, ciphertext: base64("app"), epoch: epoch + 1 }), 200);
    }
    const stored = await commitRows(convoId);

    const epochsOf = async (params: Record<string, number>) => {
      const reply = await api.get(bob, "getCommits", { convoId, ...params });
      expectReply(reply, 200);
      expect(reply.body.convoId).toBe(convoId);
      return (reply.body.commits as { epoch: number }[]).map((commit) => commit.epoch);
    };
    expect(await epochsOf({ fromEpoch: 0 })).toEqual([0, 1, 2, 3, 4, 5]);
    expect(await epochsOf({ fromEpoch: 2, toEpoch: 4 })).toEqual([2, 3, 4]);
    expect(await epochsOf({ fromEpoch: 3 })).toEqual([3, 4, 5]);
    expect(await epochsOf({ fromEpoch: 5, toEpoch: 5 })).toEqual([5]);
    expect(await epochsOf({ fromEpoch: 6 })).toEqual([]);

    const all = await api.get(bob, "getCommits", { convoId, fromEpoch: 0 });
    expect(all.body.commits).toEqual(
      stored.map((row) => ({
        id: row.id,
        epoch: row.epoch,
        ciphertext: { $bytes: base64(row.ciphertext) },
        sender: alice,
        createdAt: row.created_at.toISOString(),
      })),
    );
    expectReply(await api.get(bob, "getCommits", { convoId, fromEpoch: 4, toEpoch: 3 }), 400, "InvalidRequest");
  });
});

describe("real MLS commit and message bytes", () => {
  async function mlsConvo(options: { publicCommit?: boolean } = {}) {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const group = await makeGroupWithCommit({ creatorDid: alice, memberDid: bob, ...options });
    const convoId = await api.createConvo(alice, [], { groupId: group.groupIdHex });
    return { alice, bob, group, convoId };
  }

  it.each([
    { framing: "PrivateMessage", publicCommit: false },
    { framing: "PublicMessage", publicCommit: true },
  ])("reads the epoch and group id from a $framing commit", async ({ publicCommit }) => {
    const { alice, bob, group, convoId } = await mlsConvo({ publicCommit });
    const other = await makeGroupWithCommit({ publicCommit });
    const add = (commit: Uint8Array, epoch?: number) =>
      api.post(alice, "addMembers", { convoId, didList: [bob], commit: base64(commit), epoch });

    const disagreeing = await add(group.commitBytes, group.commitEpoch + 1);
    expectReply(disagreeing, 400, "InvalidRequest");
    expect(disagreeing.body.message).toContain("epoch");
    expectReply(await add(other.commitBytes, 0), 400, "InvalidRequest");
    expectReply(await add(other.commitBytes), 400, "InvalidRequest");
    expect(await commitRows(convoId)).toHaveLength(0);

    // No epoch field: the commit's own epoch (0) is the one checked.
    const accepted = await add(group.commitBytes);
    expectReply(accepted, 200);
    expect(accepted.body).toEqual({ success: true, newEpoch: 1 });
    expect((await add(group.commitBytes, 0)).body).toEqual(accepted.body);
    const commits = await commitRows(convoId);
    expect(commits.map((row) => row.epoch)).toEqual([group.commitEpoch]);
    expect(Buffer.from(commits[0]!.ciphertext).equals(Buffer.from(group.commitBytes))).toBe(true);
  });

  it("reads the epoch and group id from an application message", async () => {
    const { alice, bob, group, convoId } = await mlsConvo();
    const other = await makeGroupWithCommit();
    expectReply(
      await api.post(alice, "addMembers", { convoId, didList: [bob], commit: base64(group.commitBytes) }),
      200,
    );
    const send = (ciphertext: Uint8Array, epoch: number) =>
      api.post(alice, "sendMessage", { convoId, ciphertext: base64(ciphertext), epoch });

    expectReply(await send(group.appMessageBytes, 0), 400, "InvalidRequest");
    expectReply(await send(group.appMessageBytes, 2), 400, "InvalidRequest");
    expectReply(await send(other.appMessageBytes, 1), 400, "InvalidRequest");
    const sent = await send(group.appMessageBytes, 1);
    expectReply(sent, 200);

    const page = await api.get(bob, "getMessages", { convoId });
    expect(page.body.messages.map((m: { ciphertext: { $bytes: string } }) => m.ciphertext.$bytes)).toEqual([
      base64(group.commitBytes),
      base64(group.appMessageBytes),
    ]);
  });
});
