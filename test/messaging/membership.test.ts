/**
 * Rules 1 and 4 (membership, natural idempotency) on real Postgres: who may call each messaging method, who may
 * remove whom, concurrent adds and leaves that change membership exactly once, member limits and welcome rows.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit, TestGroup } from "../helpers/mls.js";
import {
  Api,
  base64,
  expectOutcome,
  expectRefusal,
  ok,
  outcome,
  range,
  utf8,
  type Caller,
  type Outcome,
} from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

/** One call of each messaging method that an active member may make, on conversation `convoId`. */
const calls: Record<string, (caller: Caller, convoId: string) => Promise<Outcome<unknown>>> = {
  addMembers: (caller, convoId) => outcome(api.as(caller).addMembers({ convoId, didList: [unique("did:plc:new")] })),
  leaveConvo: (caller, convoId) => outcome(api.as(caller).leaveConvo({ convoId })),
  sendMessage: (caller, convoId) => outcome(api.as(caller).sendMessage({ convoId, ciphertext: utf8("hi"), epoch: 0 })),
  getMessages: (caller, convoId) => outcome(api.as(caller).getMessages({ convoId })),
  getCommits: (caller, convoId) => outcome(api.as(caller).getCommits({ convoId, fromEpoch: 0 })),
  getEpoch: (caller, convoId) => outcome(api.as(caller).getEpoch({ convoId })),
  updateCursor: (caller, convoId) => outcome(api.as(caller).updateCursor({ convoId, cursor: "1" })),
};
type Role = "member" | "former member" | "stranger" | "no token";

/** What each role gets: members may do everything, a former member may only leave again (a no-op). */
function expected(method: string, role: Role): [number, string?] {
  if (role === "member") return [200];
  if (role === "no token") return [401, "AuthenticationRequired"];
  if (role === "former member" && method === "leaveConvo") return [200];
  return [403, "NotMember"];
}

interface MembershipEvent {
  type: string;
  did: string;
}

function membershipEvents(convoId: string): Promise<MembershipEvent[]> {
  return db.query<MembershipEvent>(
    `SELECT payload->>'type' AS type, payload->>'did' AS did FROM events
      WHERE convo_id = $1 AND kind = 'membership' ORDER BY seq`,
    [convoId],
  );
}

async function memberRows(convoId: string) {
  return db.query<{ did: string; left_at: Date | null; joined_at: Date }>(
    `SELECT did, joined_at, left_at FROM members WHERE convo_id = $1 ORDER BY did`,
    [convoId],
  );
}

const activeDids = async (convoId: string) =>
  (await memberRows(convoId)).filter((row) => row.left_at === null).map((row) => row.did);

describe("authorization matrix", () => {
  const roles: Role[] = ["member", "former member", "stranger", "no token"];
  const cases = Object.keys(calls).flatMap((method) => roles.map((role) => ({ method, role })));

  it.each(cases)("$method by a $role", async ({ method, role }) => {
    const creator = unique("did:plc:creator");
    const member = unique("did:plc:member");
    const former = unique("did:plc:former");
    const convoId = await api.createConvo(creator, [member, former]);
    await ok(api.as(former).leaveConvo({ convoId }));
    const caller: Caller = { member, "former member": former, stranger: unique("did:plc:stranger"), "no token": null }[
      role
    ];

    const [status, error] = expected(method, role);
    const reply = await calls[method]!(caller, convoId);
    expectOutcome(reply, status, error);
    if (role === "former member" && method === "leaveConvo") expect(reply.data).toEqual({ success: true, newEpoch: 0 });
  });

  it.each(Object.keys(calls))("%s of a conversation that does not exist is 404 ConvoNotFound", async (method) => {
    const reply = await calls[method]!(unique("did:plc:someone"), unique("no-such-convo-"));
    expectOutcome(reply, 404, "ConvoNotFound");
  });

  it("refuses senderDid other than the caller", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);
    const send = (senderDid: string) =>
      api.as(alice).sendMessage({ convoId, ciphertext: utf8("hi"), epoch: 0, senderDid });

    await expectRefusal(send(bob), 403, "Forbidden");
    await ok(send(alice));
    const rows = await db.query<{ sender_did: string }>(`SELECT sender_did FROM messages WHERE convo_id = $1`, [
      convoId,
    ]);
    expect(rows).toEqual([{ sender_did: alice }]);
  });
});

describe("removing members", () => {
  it("lets the creator remove another member, who can then read nothing", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);
    await ok(api.as(alice).sendMessage({ convoId, ciphertext: utf8("before"), epoch: 0 }));
    await ok(api.as(bob).getMessages({ convoId }));

    const removed = await ok(api.as(alice).leaveConvo({ convoId, targetDid: bob }));
    expect(removed.data).toEqual({ success: true, newEpoch: 0 });

    await expectRefusal(api.as(bob).getMessages({ convoId }), 403, "NotMember");
    await expectRefusal(api.as(bob).sendMessage({ convoId, ciphertext: utf8("after"), epoch: 0 }), 403, "NotMember");
    expect(await activeDids(convoId)).toEqual([alice]);
    expect((await membershipEvents(convoId)).at(-1)).toEqual({ type: "removed", did: bob });
  });

  it("refuses a non-creator removing someone else (403 NotCreator) and changes nothing", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const carol = unique("did:plc:carol");
    const group = await TestGroup.create({ creatorDid: bob });
    const convoId = await api.createConvo(alice, [bob, carol], { groupId: group.groupIdHex });

    await expectRefusal(api.as(bob).leaveConvo({ convoId, targetDid: carol }), 403, "NotCreator");
    await expectRefusal(api.as(bob).leaveConvo({ convoId, targetDid: alice }), 403, "NotCreator");
    const commit = await group.commit();
    await expectRefusal(api.as(bob).leaveConvo({ convoId, targetDid: carol, commit, epoch: 0 }), 403, "NotCreator");
    expect((await activeDids(convoId)).sort()).toEqual([alice, bob, carol].sort());
    expect((await api.as(alice).getEpoch({ convoId })).data.currentEpoch).toBe(0);
  });

  it("lets an admin from ADMIN_DIDS who is a member remove someone else", async () => {
    const admin = unique("did:plc:admin");
    const admins = new Api(testApp(db, { ADMIN_DIDS: admin }).app);
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await admins.createConvo(alice, [bob, admin]);

    await expectRefusal(admins.as(bob).leaveConvo({ convoId, targetDid: alice }), 403, "NotCreator");
    await ok(admins.as(admin).leaveConvo({ convoId, targetDid: bob }));
    expect((await activeDids(convoId)).sort()).toEqual([admin, alice].sort());
  });
});

describe("concurrent membership changes", () => {
  it("adds the same 10 DIDs once when 50 addMembers race", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    const dids = range(1, 10).map(() => unique("did:plc:member"));

    const replies = await Promise.all(
      range(1, 50).map((n) =>
        // Each request names the same ten, in a different order.
        api.as(alice).addMembers({ convoId, didList: [...dids.slice(n % 10), ...dids.slice(0, n % 10)] }),
      ),
    );

    for (const reply of replies) {
      expect(reply.status).toBe(200);
      expect(reply.data).toEqual({ success: true, newEpoch: 0 });
    }
    const rows = await memberRows(convoId);
    expect(rows).toHaveLength(11);
    expect(rows.map((row) => row.did).sort()).toEqual([alice, ...dids].sort());
    expect(rows.every((row) => row.left_at === null)).toBe(true);
    const joined = (await membershipEvents(convoId)).filter((event) => event.type === "joined");
    expect(joined.map((event) => event.did).sort()).toEqual([alice, ...dids].sort());
  });

  it("leaves once when the same member sends 50 concurrent leaveConvo", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);

    const replies = await Promise.all(range(1, 50).map(() => api.as(bob).leaveConvo({ convoId })));

    for (const reply of replies) {
      expect(reply.status).toBe(200);
      expect(reply.data).toEqual({ success: true, newEpoch: 0 });
    }
    const bobRow = (await memberRows(convoId)).find((row) => row.did === bob)!;
    expect(bobRow.left_at).toBeInstanceOf(Date);
    const events = await membershipEvents(convoId);
    expect(events.filter((event) => event.type === "left")).toEqual([{ type: "left", did: bob }]);
  });

  it("never stores a message from a member after the event that ended their membership", async () => {
    // A send that waited for a concurrent leave must see the leave, not the membership from before it.
    for (let round = 0; round < 10; round++) {
      const alice = unique("did:plc:alice");
      const bob = unique("did:plc:bob");
      const convoId = await api.createConvo(alice, [bob]);
      const sends = range(1, 10).map(() =>
        outcome(api.as(bob).sendMessage({ convoId, ciphertext: utf8("racing"), epoch: 0 })),
      );
      const [left, ...sent] = await Promise.all([outcome(api.as(bob).leaveConvo({ convoId })), ...sends]);
      expectOutcome(left!, 200);
      for (const reply of sent) expect([200, 403]).toContain(reply.status);

      const [order] = await db.query<{ left_seq: number; last_message_seq: number | null }>(
        `SELECT (SELECT seq FROM events WHERE convo_id = $1 AND kind = 'membership' AND payload->>'type' = 'left') AS left_seq,
                (SELECT max(e.seq) FROM events e JOIN messages m ON m.convo_id = e.convo_id AND m.seq = e.message_seq
                  WHERE e.convo_id = $1 AND m.sender_did = $2) AS last_message_seq`,
        [convoId, bob],
      );
      expect(order!.last_message_seq ?? 0, `round ${round}`).toBeLessThan(order!.left_seq);
    }
  });

  it("reactivates a former member who is added again", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);
    await ok(api.as(alice).leaveConvo({ convoId, targetDid: bob }));
    await expectRefusal(api.as(bob).getEpoch({ convoId }), 403, "NotMember");

    await ok(api.as(alice).addMembers({ convoId, didList: [bob] }));

    const bobRow = (await memberRows(convoId)).find((row) => row.did === bob)!;
    expect(bobRow.left_at).toBeNull();
    await ok(api.as(bob).getMessages({ convoId }));
    await ok(api.as(bob).sendMessage({ convoId, ciphertext: utf8("back"), epoch: 0 }));
    const events = (await membershipEvents(convoId)).filter((event) => event.did === bob);
    expect(events.map((event) => event.type)).toEqual(["joined", "removed", "joined"]);
  });
});

describe("member limits", () => {
  it("refuses more than 100 DIDs in one call (TooManyMembers)", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    const dids = (n: number) => range(1, n).map(() => unique("did:plc:m"));

    await expectRefusal(api.as(alice).addMembers({ convoId, didList: dids(101) }), 400, "TooManyMembers");
    expect(await activeDids(convoId)).toEqual([alice]);
    await ok(api.as(alice).addMembers({ convoId, didList: dids(100) }));
    expect(await activeDids(convoId)).toHaveLength(101);

    const tooMany = api.as(alice).createConvo({
      groupId: crypto.randomUUID().replace(/-/g, ""),
      cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
      initialMembers: dids(101),
    });
    await expectRefusal(tooMany, 400, "TooManyMembers");
  });

  it("keeps a conversation within MAX_MEMBERS_PER_CONVO", async () => {
    const small = new Api(testApp(db, { MAX_MEMBERS_PER_CONVO: "5" }).app);
    const alice = unique("did:plc:alice");
    const four = range(1, 4).map(() => unique("did:plc:m"));

    await expectRefusal(
      small.as(alice).createConvo({
        groupId: crypto.randomUUID().replace(/-/g, ""),
        cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
        initialMembers: [...four, unique("did:plc:m")],
      }),
      400,
      "TooManyMembers",
    );
    const convoId = await small.createConvo(alice, four);
    await expectRefusal(small.as(alice).addMembers({ convoId, didList: [unique("did:plc:m")] }), 400, "TooManyMembers");
    // Naming members who are already in adds nothing, so it fits.
    await ok(small.as(alice).addMembers({ convoId, didList: four }));
    await ok(small.as(four[0]!).leaveConvo({ convoId }));
    await ok(small.as(alice).addMembers({ convoId, didList: [unique("did:plc:m")] }));
    expect(await activeDids(convoId)).toHaveLength(5);
  });

  it("admits exactly up to MAX_MEMBERS_PER_CONVO when adds race", async () => {
    const small = new Api(testApp(db, { MAX_MEMBERS_PER_CONVO: "5" }).app);
    const alice = unique("did:plc:alice");
    const convoId = await small.createConvo(alice);

    const replies = await Promise.all(
      range(1, 12).map(() => outcome(small.as(alice).addMembers({ convoId, didList: [unique("did:plc:m")] }))),
    );

    expect(replies.filter((reply) => reply.status === 200)).toHaveLength(4);
    for (const reply of replies.filter((reply) => reply.status !== 200)) expectOutcome(reply, 400, "TooManyMembers");
    expect(await activeDids(convoId)).toHaveLength(5);
  });
});

describe("welcome rows", () => {
  const hash = (n: number) => n.toString(16).padStart(64, "0");
  let welcome: Uint8Array;
  beforeAll(async () => {
    welcome = (await makeGroupWithCommit()).welcomeBytes;
  });

  function welcomeRows(convoId: string) {
    return db.query<{ recipient_did: string; welcome: Uint8Array; key_package_hash: string | null; state: string }>(
      `SELECT w.recipient_did, coalesce(w.welcome, p.welcome) AS welcome, w.key_package_hash, w.state
         FROM welcome_messages w LEFT JOIN welcome_payloads p ON p.hash = w.payload_hash
        WHERE w.convo_id = $1 ORDER BY w.recipient_did`,
      [convoId],
    );
  }

  it("creates one welcome per new member of addMembers, none for existing members", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);
    const newcomers = range(1, 3).map(() => unique("did:plc:new"));

    await ok(
      api.as(alice).addMembers({
        convoId,
        didList: [bob, ...newcomers],
        welcomeMessage: welcome,
        keyPackageHashes: [
          { did: newcomers[0]!, hash: hash(1) },
          { did: newcomers[1]!, hash: hash(2) },
        ],
      }),
    );

    const rows = await welcomeRows(convoId);
    expect(rows.map((row) => row.recipient_did)).toEqual([...newcomers].sort());
    for (const row of rows) {
      expect(base64(row.welcome)).toBe(base64(welcome));
      expect(row.state).toBe("available");
    }
    const hashes = Object.fromEntries(rows.map((row) => [row.recipient_did, row.key_package_hash]));
    expect(hashes).toEqual({ [newcomers[0]!]: hash(1), [newcomers[1]!]: hash(2), [newcomers[2]!]: null });

    // Without a welcome, new members get no row.
    await ok(api.as(alice).addMembers({ convoId, didList: [unique("did:plc:new")] }));
    expect(await welcomeRows(convoId)).toHaveLength(3);
  });

  it("creates one welcome per initial member of createConvo, none for the creator", async () => {
    const alice = unique("did:plc:alice");
    const members = range(1, 3).map(() => unique("did:plc:m"));
    const convoId = await api.createConvo(alice, members, { welcomeMessage: welcome });

    const rows = await welcomeRows(convoId);
    expect(rows.map((row) => row.recipient_did)).toEqual([...members].sort());
  });
});
