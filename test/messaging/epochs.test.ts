/**
 * Rule 3 (epochs) on real Postgres: a commit is accepted only for the current epoch, one per epoch wins even
 * under concurrency, each advances the epoch by one; the very same commit again is the same success (rule 4);
 * application messages may not run ahead of the conversation; real MLS bytes carry the epoch and group id.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { watchingPool } from "../helpers/faults.js";
import { makeGroupWithCommit, TestGroup } from "../helpers/mls.js";
import type { Input } from "mls-delivery-service/client";
import { Api, expectOutcome, expectRefusal, ok, outcome, range, storedMessages, utf8, type Outcome } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

async function currentEpoch(did: string, convoId: string): Promise<number> {
  const reply = await ok(api.as(did).getEpoch({ convoId }));
  return reply.data.currentEpoch;
}

async function commitRows(convoId: string) {
  return (await storedMessages(db, convoId)).filter((row) => row.message_type === "commit");
}

/** Exactly one winner; everyone else 409 EpochMismatch naming the epoch the winner moved the conversation to. */
function expectOneWinner(replies: Outcome<unknown>[], newEpoch: number): number {
  const winners = replies.flatMap((reply, i) => (reply.status === 200 ? [i] : []));
  expect(winners).toHaveLength(1);
  expect(replies[winners[0]!]!.data).toEqual({ success: true, newEpoch });
  for (const reply of replies.filter((reply) => reply.status !== 200)) {
    expectOutcome(reply, 409, "EpochMismatch");
    expect("message" in reply && reply.message).toContain(`epoch ${newEpoch}`);
  }
  return winners[0]!;
}

/** A conversation over a real ts-mls group, whose commits the tests send. */
async function groupConvo(creator: string, members: string[] = []) {
  const group = await TestGroup.create({ creatorDid: creator });
  const convoId = await api.createConvo(creator, members, { groupId: group.groupIdHex });
  return { group, convoId };
}

/** Adds a newcomer with the group's commit for the current epoch (the epoch field too); returns the commit. */
async function addWithCommit(creator: string, convoId: string, group: TestGroup): Promise<Uint8Array> {
  const epoch = group.epoch;
  const commit = await group.commit();
  await ok(api.as(creator).addMembers({ convoId, didList: [unique("did:plc:new")], commit, epoch }));
  return commit;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe("one commit per epoch", () => {
  it("accepts exactly one of 20 concurrent addMembers commits for the same epoch", async () => {
    const alice = unique("did:plc:alice");
    const { group, convoId } = await groupConvo(alice, [unique("did:plc:bob")]);
    const newcomers = range(1, 20).map(() => unique("did:plc:new"));
    const rivals = await Promise.all(newcomers.map(() => group.rivalCommit()));

    const replies = await Promise.all(
      newcomers.map((did, i) =>
        outcome(api.as(alice).addMembers({ convoId, didList: [did], commit: rivals[i]!, epoch: 0 })),
      ),
    );

    const winner = expectOneWinner(replies, 1);
    expect(await currentEpoch(alice, convoId)).toBe(1);
    const commits = await commitRows(convoId);
    expect(commits).toHaveLength(1);
    expect(commits[0]).toMatchObject({ epoch: 0, sender_did: alice, seq: 1 });
    expect(sameBytes(commits[0]!.ciphertext, rivals[winner]!)).toBe(true);
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
    const { group, convoId } = await groupConvo(alice, members);
    const first = await addWithCommit(alice, convoId, group);
    const rivals = await Promise.all(members.map(() => group.rivalCommit()));

    const replies = await Promise.all(
      members.map((did, i) => outcome(api.as(did).leaveConvo({ convoId, commit: rivals[i]!, epoch: 1 }))),
    );

    const winner = expectOneWinner(replies, 2);
    expect(await currentEpoch(alice, convoId)).toBe(2);
    const commits = await commitRows(convoId);
    expect(commits.map((row) => row.epoch)).toEqual([0, 1]);
    expect(sameBytes(commits[0]!.ciphertext, first)).toBe(true);
    expect(sameBytes(commits[1]!.ciphertext, rivals[winner]!)).toBe(true);
    const left = await db.query<{ did: string }>(
      `SELECT did FROM members WHERE convo_id = $1 AND left_at IS NOT NULL`,
      [convoId],
    );
    expect(left.map((row) => row.did)).toEqual([members[winner]]);
  });

  it("accepts exactly one of 20 concurrent removals by the creator with commits for the same epoch", async () => {
    const alice = unique("did:plc:alice");
    const members = range(1, 20).map(() => unique("did:plc:member"));
    const { group, convoId } = await groupConvo(alice, members);
    const rivals = await Promise.all(members.map(() => group.rivalCommit()));

    const replies = await Promise.all(
      members.map((did, i) =>
        outcome(api.as(alice).leaveConvo({ convoId, targetDid: did, commit: rivals[i]!, epoch: 0 })),
      ),
    );

    const winner = expectOneWinner(replies, 1);
    expect(await commitRows(convoId)).toHaveLength(1);
    await expectRefusal(api.as(members[winner]!).getEpoch({ convoId }), 403, "NotMember");
  });

  it("refuses other commits for a past or future epoch, with or without the epoch field", async () => {
    const alice = unique("did:plc:alice");
    const { group, convoId } = await groupConvo(alice);
    await addWithCommit(alice, convoId, group);
    await addWithCommit(alice, convoId, group);

    // A second member of the same group, diverging from epoch 0: a different commit for each epoch 0..4.
    const rival = await TestGroup.create({ groupIdHex: group.groupIdHex });
    for (let epoch = 0; epoch <= 4; epoch++) {
      const commit = await rival.commit();
      if (epoch === 2) continue;
      for (const field of [{ epoch }, {}]) {
        const reply = api.as(alice).addMembers({ convoId, didList: [unique("did:plc:new")], commit, ...field });
        const refusal = await expectRefusal(reply, 409, "EpochMismatch");
        expect(refusal.message).toContain("epoch 2");
      }
    }
    expect(await currentEpoch(alice, convoId)).toBe(2);
    expect((await commitRows(convoId)).map((row) => row.epoch)).toEqual([0, 1]);
  });

  it("answers the very same commit again with the same success and stores it once", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const { group, convoId } = await groupConvo(alice);
    // Each call has its own idempotency key: the same commit is recognised by its bytes, not by a key.
    const body: Input<"addMembers"> = { convoId, didList: [bob], commit: await group.commit(), epoch: 0 };

    const first = await ok(api.as(alice).addMembers(body));
    expect(first.data).toEqual({ success: true, newEpoch: 1 });
    const again = await api.as(alice).addMembers(body);
    expect(again.data).toEqual(first.data);
    expect(again.replayed).toBe(false);
    // Still the same answer after the conversation moved on, and ten concurrent repeats too.
    await addWithCommit(alice, convoId, group);
    const repeats = await Promise.all(range(1, 10).map(() => outcome(api.as(alice).addMembers(body))));
    for (const reply of repeats) expect(reply.data).toEqual(first.data);

    expect(await currentEpoch(alice, convoId)).toBe(2);
    expect((await commitRows(convoId)).map((row) => row.epoch)).toEqual([0, 1]);
    // A repeated leave commit is the same success too.
    const leave = { convoId, commit: await group.commit(), epoch: 2 };
    const left = await api.as(bob).leaveConvo(leave);
    expect(left.data).toEqual({ success: true, newEpoch: 3 });
    expect((await outcome(api.as(bob).leaveConvo(leave))).data).toEqual(left.data);
    expect((await commitRows(convoId)).map((row) => row.epoch)).toEqual([0, 1, 2]);
  });

  it("accepts the same commit bytes sent concurrently as one commit", async () => {
    const alice = unique("did:plc:alice");
    const { group, convoId } = await groupConvo(alice);
    const body = { convoId, didList: [unique("did:plc:bob")], commit: await group.commit(), epoch: 0 };

    const replies = await Promise.all(range(1, 20).map(() => outcome(api.as(alice).addMembers(body))));

    for (const reply of replies) expect(reply.data).toEqual({ success: true, newEpoch: 1 });
    expect(await commitRows(convoId)).toHaveLength(1);
    expect(await currentEpoch(alice, convoId)).toBe(1);
  });
});

describe("application messages and epochs", () => {
  it("refuses a message for a future epoch and accepts the current and past ones", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const { group, convoId } = await groupConvo(alice, [bob]);
    const send = (epoch: number) => api.as(bob).sendMessage({ convoId, ciphertext: utf8("hi"), epoch });

    const ahead = await expectRefusal(send(1), 409, "EpochMismatch");
    expect(ahead.message).toContain("epoch 0");
    await ok(send(0));

    await addWithCommit(alice, convoId, group);
    await addWithCommit(alice, convoId, group);
    for (const epoch of [0, 1, 2]) {
      const reply = await ok(send(epoch));
      expect(reply.data.epoch).toBe(epoch);
    }
    await expectRefusal(send(3), 409, "EpochMismatch");
    await expectRefusal(send(Number.MAX_SAFE_INTEGER), 409, "EpochMismatch");

    const stored = (await storedMessages(db, convoId)).filter((row) => row.message_type === "app");
    expect(stored.map((row) => row.epoch)).toEqual([0, 0, 1, 2]);
  });

  it("lets no message through ahead of an epoch that concurrent commits are still moving", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const { group, convoId } = await groupConvo(alice, [bob]);
    const pending = await group.commits(5);

    // Messages for epochs 0..5 race five commits; each message is stored only if its epoch was reached.
    const commits = (async () => {
      for (const [epoch, commit] of pending.entries()) {
        await ok(api.as(alice).addMembers({ convoId, didList: [unique("did:plc:new")], commit, epoch }));
      }
    })();
    const sends = Promise.all(
      range(0, 59).map((n) => outcome(api.as(bob).sendMessage({ convoId, ciphertext: utf8(`m${n}`), epoch: n % 6 }))),
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
    const { group, convoId } = await groupConvo(alice, [bob]);
    for (let epoch = 0; epoch < 6; epoch++) {
      await addWithCommit(alice, convoId, group);
      await ok(api.as(bob).sendMessage({ convoId, ciphertext: utf8("app"), epoch: epoch + 1 }));
    }
    const stored = await commitRows(convoId);

    const epochsOf = async (params: { fromEpoch: number; toEpoch?: number }) => {
      const reply = await ok(api.as(bob).getCommits({ convoId, ...params }));
      expect(reply.data.convoId).toBe(convoId);
      return reply.data.commits.map((commit) => commit.epoch);
    };
    expect(await epochsOf({ fromEpoch: 0 })).toEqual([0, 1, 2, 3, 4, 5]);
    expect(await epochsOf({ fromEpoch: 2, toEpoch: 4 })).toEqual([2, 3, 4]);
    expect(await epochsOf({ fromEpoch: 3 })).toEqual([3, 4, 5]);
    expect(await epochsOf({ fromEpoch: 5, toEpoch: 5 })).toEqual([5]);
    expect(await epochsOf({ fromEpoch: 6 })).toEqual([]);

    const all = await api.as(bob).getCommits({ convoId, fromEpoch: 0 });
    expect(all.data.commits).toEqual(
      stored.map((row) => ({
        id: row.id,
        epoch: row.epoch,
        ciphertext: new Uint8Array(row.ciphertext),
        sender: alice,
        senderDevice: "",
        createdAt: row.created_at.toISOString(),
      })),
    );
    await expectRefusal(api.as(bob).getCommits({ convoId, fromEpoch: 4, toEpoch: 3 }), 400, "InvalidRequest");
  });

  it("checks the caller in the page's statement: 404 for no conversation, 403 for a stranger, one statement each", async () => {
    const alice = unique("did:plc:alice");
    const { group, convoId } = await groupConvo(alice);
    await addWithCommit(alice, convoId, group);
    const statements: string[] = [];
    const watched = new Api(testApp(watchingPool(db, (sql) => statements.push(sql))).app);
    const pageOf = async (did: string, id: string) => {
      statements.length = 0;
      const answer = await outcome(watched.as(did).getCommits({ convoId: id, fromEpoch: 0 }));
      expect(statements).toHaveLength(1);
      return answer;
    };

    expect((await pageOf(alice, convoId)).data?.commits.map((commit) => commit.epoch)).toEqual([0]);
    expectOutcome(await pageOf(unique("did:plc:stranger"), convoId), 403, "NotMember");
    expectOutcome(await pageOf(alice, crypto.randomUUID()), 404, "ConvoNotFound");
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
      api.as(alice).addMembers({ convoId, didList: [bob], commit, epoch });

    const disagreeing = await expectRefusal(add(group.commitBytes, group.commitEpoch + 1), 400, "InvalidCommit");
    expect(disagreeing.message).toContain("epoch");
    await expectRefusal(add(other.commitBytes, 0), 400, "InvalidCommit");
    await expectRefusal(add(other.commitBytes), 400, "InvalidCommit");
    expect(await commitRows(convoId)).toHaveLength(0);

    // No epoch field: the commit's own epoch (0) is the one checked.
    const accepted = await ok(add(group.commitBytes));
    expect(accepted.data).toEqual({ success: true, newEpoch: 1 });
    expect((await outcome(add(group.commitBytes, 0))).data).toEqual(accepted.data);
    const commits = await commitRows(convoId);
    expect(commits.map((row) => row.epoch)).toEqual([group.commitEpoch]);
    expect(Buffer.from(commits[0]!.ciphertext).equals(Buffer.from(group.commitBytes))).toBe(true);
  });

  it("reads the epoch and group id from an application message", async () => {
    const { alice, bob, group, convoId } = await mlsConvo();
    const other = await makeGroupWithCommit();
    await ok(api.as(alice).addMembers({ convoId, didList: [bob], commit: group.commitBytes }));
    const send = (ciphertext: Uint8Array, epoch: number) => api.as(alice).sendMessage({ convoId, ciphertext, epoch });

    await expectRefusal(send(group.appMessageBytes, 0), 400, "InvalidRequest");
    await expectRefusal(send(group.appMessageBytes, 2), 400, "InvalidRequest");
    await expectRefusal(send(other.appMessageBytes, 1), 400, "InvalidRequest");
    await ok(send(group.appMessageBytes, 1));

    const page = await api.as(bob).getMessages({ convoId });
    expect(page.data.messages.map((m) => m.ciphertext)).toEqual([
      new Uint8Array(group.commitBytes),
      new Uint8Array(group.appMessageBytes),
    ]);
  });
});
