/**
 * Rule 3 (content types) on real Postgres with real ts-mls bytes: a commit enters the log only through the
 * one-per-epoch path (addMembers/leaveConvo), and only an MLS message of content type commit is a commit;
 * sendMessage stores application messages and proposals, and refuses every other MLS message.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit, TestGroup, withEpoch } from "../helpers/mls.js";
import { Api, base64, expectRefusal, expectReply, ok, storedMessages, utf8, Xrpc } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const { app } = testApp(db);
const api = new Api(app);
/** Raw, for a send without an idempotency key (the typed client keys every procedure). */
const raw = new Xrpc(app);

async function mlsConvo(members: string[] = []) {
  const alice = unique("did:plc:alice");
  const group = await TestGroup.create({ creatorDid: alice });
  const convoId = await api.createConvo(alice, members, { groupId: group.groupIdHex });
  return { alice, group, convoId };
}

const epochOf = async (did: string, convoId: string) => (await api.as(did).getEpoch({ convoId })).data.currentEpoch;
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe("a commit cannot enter the log through sendMessage", () => {
  it.each([
    { framing: "PrivateMessage", publicMessage: false, keyed: false },
    { framing: "PublicMessage", publicMessage: true, keyed: false },
    { framing: "PrivateMessage with an idempotency key", publicMessage: false, keyed: true },
  ])(
    "refuses a real $framing commit (400 NotApplicationMessage); a rival then commits the epoch alone",
    async ({ publicMessage, keyed }) => {
      const bob = unique("did:plc:bob");
      const { alice, group, convoId } = await mlsConvo([bob]);
      const smuggled = await group.rivalCommit({ publicMessage });
      const key = keyed ? { idempotencyKey: unique("key") } : {};

      if (keyed) {
        const sent = api.as(alice).sendMessage({ convoId, ciphertext: smuggled, epoch: 0, ...key });
        await expectRefusal(sent, 400, "NotApplicationMessage");
      } else {
        const sent = await raw.post(alice, "sendMessage", { convoId, ciphertext: base64(smuggled), epoch: 0 });
        expectReply(sent, 400, "NotApplicationMessage");
      }
      expect(await storedMessages(db, convoId)).toEqual([]);

      const commit = await group.commit({ publicMessage });
      const added = await ok(api.as(alice).addMembers({ convoId, didList: [unique("did:plc:carol")], commit }));
      expect(added.data).toEqual({ success: true, newEpoch: 1 });

      const rows = await storedMessages(db, convoId);
      expect(rows.map((row) => [row.message_type, row.epoch])).toEqual([["commit", 0]]);
      expect(same(rows[0]!.ciphertext, commit)).toBe(true);
      // The smuggled commit is now just a losing rival for epoch 0.
      await expectRefusal(
        api.as(alice).addMembers({ convoId, didList: [unique("did:plc:dave")], commit: smuggled }),
        409,
        "EpochMismatch",
      );
      expect(await epochOf(alice, convoId)).toBe(1);
    },
  );

  it("refuses a Welcome, a KeyPackage and a GroupInfo (400 NotApplicationMessage) and stores nothing", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const group = await makeGroupWithCommit({ creatorDid: alice, memberDid: bob });
    const convoId = await api.createConvo(alice, [bob], { groupId: group.groupIdHex });

    for (const bytes of [group.welcomeBytes, group.keyPackageBytes, group.groupInfoBytes]) {
      for (const epoch of [0, 1]) {
        await expectRefusal(
          api.as(alice).sendMessage({ convoId, ciphertext: bytes, epoch }),
          400,
          "NotApplicationMessage",
        );
      }
    }
    expect(await storedMessages(db, convoId)).toEqual([]);
  });
});

describe("only an MLS commit is a commit", () => {
  it("refuses opaque bytes with an epoch as a commit (400 InvalidCommit) and leaves the epoch alone", async () => {
    const bob = unique("did:plc:bob");
    const carol = unique("did:plc:carol");
    const { alice, convoId } = await mlsConvo([bob, carol]);
    const opaque = utf8("not a commit");

    for (const epoch of [0, undefined]) {
      const add = api.as(alice).addMembers({ convoId, didList: [unique("did:plc:x")], commit: opaque, epoch });
      await expectRefusal(add, 400, "InvalidCommit");
      await expectRefusal(api.as(bob).leaveConvo({ convoId, commit: opaque, epoch }), 400, "InvalidCommit");
      const removal = api.as(alice).leaveConvo({ convoId, targetDid: carol, commit: opaque, epoch });
      await expectRefusal(removal, 400, "InvalidCommit");
    }
    expect(await epochOf(alice, convoId)).toBe(0);
    expect(await storedMessages(db, convoId)).toEqual([]);
    const members = await api.as(alice).getConvos({});
    const convo = members.data.conversations.find((c) => c.id === convoId)!;
    expect(convo.members.map((m) => m.did).sort()).toEqual([alice, bob, carol].sort());
  });

  it("refuses MLS messages that are not commits, as commits (400 InvalidCommit)", async () => {
    const { alice, group, convoId } = await mlsConvo();
    const other = await makeGroupWithCommit({ creatorDid: alice });
    const notCommits = [
      await group.application(),
      await group.proposal(),
      await group.proposal({ publicMessage: true }),
      other.welcomeBytes,
      other.keyPackageBytes,
      other.groupInfoBytes,
    ];
    for (const bytes of notCommits) {
      const reply = api.as(alice).addMembers({ convoId, didList: [unique("did:plc:x")], commit: bytes, epoch: 0 });
      await expectRefusal(reply, 400, "InvalidCommit");
    }
    expect(await epochOf(alice, convoId)).toBe(0);
    expect(await storedMessages(db, convoId)).toEqual([]);
  });

  it("refuses a commit whose framed epoch is beyond Number.MAX_SAFE_INTEGER, whatever the epoch field says", async () => {
    const { alice, group, convoId } = await mlsConvo();
    const huge = withEpoch(await group.rivalCommit(), BigInt(Number.MAX_SAFE_INTEGER) + 1n);
    for (const epoch of [0, undefined]) {
      const reply = api.as(alice).addMembers({ convoId, didList: [unique("did:plc:x")], commit: huge, epoch });
      await expectRefusal(reply, 400, "InvalidCommit");
    }
    expect(await epochOf(alice, convoId)).toBe(0);
  });

  it("refuses a commit of another group and one whose epoch field disagrees with its framing (400 InvalidCommit)", async () => {
    const { alice, group, convoId } = await mlsConvo();
    const foreign = await (await TestGroup.create()).rivalCommit();
    const commit = await group.rivalCommit();
    const add = (bytes: Uint8Array, epoch?: number) =>
      api.as(alice).addMembers({ convoId, didList: [unique("did:plc:x")], commit: bytes, epoch });

    await expectRefusal(add(foreign), 400, "InvalidCommit");
    await expectRefusal(add(foreign, 0), 400, "InvalidCommit");
    await expectRefusal(add(commit, 1), 400, "InvalidCommit");
    expect(await epochOf(alice, convoId)).toBe(0);
    await ok(add(commit, 0));
  });
});

describe("sendMessage stores application messages and proposals", () => {
  it("stores a real application message as messageType app and a proposal as messageType proposal", async () => {
    const bob = unique("did:plc:bob");
    const { alice, group, convoId } = await mlsConvo([bob]);
    const application = await group.application("hi");
    const privateProposal = await group.proposal();
    const publicProposal = await group.proposal({ publicMessage: true });
    const opaque = new TextEncoder().encode("opaque application data");

    for (const bytes of [application, privateProposal, publicProposal, opaque]) {
      await ok(api.as(alice).sendMessage({ convoId, ciphertext: bytes, epoch: 0 }));
    }
    const page = await ok(api.as(bob).getMessages({ convoId }));
    expect(page.data.messages.map((m) => [m.messageType, m.ciphertext])).toEqual([
      ["app", new Uint8Array(application)],
      ["proposal", new Uint8Array(privateProposal)],
      ["proposal", new Uint8Array(publicProposal)],
      ["app", new Uint8Array(opaque)],
    ]);
  });

  it("refuses an application message or proposal for an epoch ahead of the conversation's (409 EpochMismatch)", async () => {
    const { alice, group, convoId } = await mlsConvo();
    await group.commit(); // the group moves to epoch 1; the conversation never hears of it
    const application = await group.application();
    const proposal = await group.proposal();
    for (const bytes of [application, proposal]) {
      await expectRefusal(api.as(alice).sendMessage({ convoId, ciphertext: bytes, epoch: 1 }), 409, "EpochMismatch");
    }
    expect(await storedMessages(db, convoId)).toEqual([]);
  });

  it("refuses a message whose framed epoch is beyond Number.MAX_SAFE_INTEGER or of another group (400)", async () => {
    const { alice, group, convoId } = await mlsConvo();
    const huge = withEpoch(await group.application(), BigInt(Number.MAX_SAFE_INTEGER) + 1n);
    const foreign = await (await TestGroup.create()).application();
    for (const epoch of [0, Number.MAX_SAFE_INTEGER]) {
      await expectRefusal(api.as(alice).sendMessage({ convoId, ciphertext: huge, epoch }), 400, "InvalidRequest");
    }
    const reply = api.as(alice).sendMessage({ convoId, ciphertext: foreign, epoch: 0 });
    const refusal = await expectRefusal(reply, 400, "InvalidRequest");
    expect(refusal.message).toContain("another MLS group");
    expect(await storedMessages(db, convoId)).toEqual([]);
  });
});
