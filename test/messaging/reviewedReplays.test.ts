/**
 * Answers that must describe what was done (rules 1, 3, 4, 6, 7), on real Postgres with real ts-mls bytes:
 * an accepted commit sent again succeeds only where the request's effect already holds; bytes that begin
 * with an MLS message are never opaque data; a member cannot swap another member's pending welcome; a
 * former member's repeated leave does not reveal the current epoch.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit, TestGroup } from "../helpers/mls.js";
import { Api, expectRefusal, ok, storedMessages } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

async function mlsConvo(members: string[]) {
  const alice = unique("did:plc:alice");
  const group = await TestGroup.create({ creatorDid: alice });
  const convoId = await api.createConvo(alice, members, { groupId: group.groupIdHex });
  return { alice, group, convoId };
}

const isActive = async (convoId: string, did: string) =>
  (await db.query(`SELECT 1 FROM members WHERE convo_id = $1 AND did = $2 AND left_at IS NULL`, [convoId, did]))
    .length > 0;

describe("an accepted commit sent again", () => {
  it("adding someone new with an old commit is 409 EpochMismatch, and nobody is added", async () => {
    const bob = unique("did:plc:bob");
    const { alice, group, convoId } = await mlsConvo([bob]);
    const first = await group.commit();
    await ok(api.as(alice).addMembers({ convoId, didList: [bob], commit: first }));

    const mallory = unique("did:plc:mallory");
    await expectRefusal(api.as(bob).addMembers({ convoId, didList: [mallory], commit: first }), 409, "EpochMismatch");
    expect(await isActive(convoId, mallory)).toBe(false);
    // The very same request again (its own idempotency key) is still a harmless repeat.
    expect((await api.as(alice).addMembers({ convoId, didList: [bob], commit: first })).data).toEqual({
      success: true,
      newEpoch: 1,
    });
  });

  it("leaving or removing with an old commit is 409 while the target is still a member", async () => {
    const bob = unique("did:plc:bob");
    const carol = unique("did:plc:carol");
    const { alice, group, convoId } = await mlsConvo([bob, carol]);
    const first = await group.commit();
    await ok(api.as(alice).addMembers({ convoId, didList: [bob], commit: first }));

    await expectRefusal(api.as(bob).leaveConvo({ convoId, commit: first }), 409, "EpochMismatch");
    await expectRefusal(api.as(alice).leaveConvo({ convoId, targetDid: carol, commit: first }), 409, "EpochMismatch");
    expect([await isActive(convoId, bob), await isActive(convoId, carol)]).toEqual([true, true]);
  });
});

describe("bytes that begin with an MLS message", () => {
  it("a real commit with a byte appended is refused by sendMessage (400 NotApplicationMessage), not stored as opaque", async () => {
    const { alice, group, convoId } = await mlsConvo([]);
    const commit = await group.rivalCommit({ publicMessage: true });
    const padded = new Uint8Array([...commit, 0]);
    await expectRefusal(
      api.as(alice).sendMessage({ convoId, ciphertext: padded, epoch: 0 }),
      400,
      "NotApplicationMessage",
    );
    expect(await storedMessages(db, convoId)).toEqual([]);
  });
});

describe("a pending welcome", () => {
  it("cannot be replaced by another member's addMembers while it is live and not reported failed", async () => {
    const bob = unique("did:plc:bob");
    const mallory = unique("did:plc:mallory");
    const { alice, convoId } = await mlsConvo([]);
    const [welcome, rival] = [(await makeGroupWithCommit()).welcomeBytes, (await makeGroupWithCommit()).welcomeBytes];
    await ok(api.as(alice).addMembers({ convoId, didList: [bob, mallory], welcomeMessage: welcome }));
    const fetched = await ok(api.as(bob).getWelcome({ convoId }));

    await ok(api.as(mallory).addMembers({ convoId, didList: [bob], welcomeMessage: rival }));
    const again = await api.as(bob).getWelcome({ convoId });
    expect(again.data.welcome).toEqual(fetched.data.welcome);
    expect(again.data.welcome).toEqual(new Uint8Array(welcome));
  });
});

describe("a former member leaving again", () => {
  it("answers the epoch it left at, not the conversation's current one", async () => {
    const carol = unique("did:plc:carol");
    const { alice, group, convoId } = await mlsConvo([carol]);
    expect((await api.as(carol).leaveConvo({ convoId })).data).toEqual({ success: true, newEpoch: 0 });
    await ok(api.as(alice).addMembers({ convoId, didList: [unique("did:plc:dan")], commit: await group.commit() }));
    expect((await api.as(carol).leaveConvo({ convoId })).data).toEqual({ success: true, newEpoch: 0 });
  });
});
