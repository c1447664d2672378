/**
 * Rule 1 and rule 8 on real Postgres: a member reads messages, commits and events from their (latest)
 * joining on, never what was sent while they were away; a position older than retention is 400
 * CursorExpired, never a silent skip; createConvo with an existing groupId reveals nothing to anyone
 * but the conversation's active creator (409 ConvoExists).
 */
import { afterAll, describe, expect, it } from "vitest";
import { eventHead, readEvents } from "../../src/services/events.js";
import { randomGroupId, testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { base64, expectReply, range, storeCommits, SUITE, Xrpc, type Json } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const { app } = testApp(db);
const api = new Xrpc(app);

async function send(did: string, convoId: string, text: string): Promise<number> {
  const reply = await api.post(did, "sendMessage", {
    convoId,
    ciphertext: base64(text),
    epoch: await epochOf(convoId),
  });
  expectReply(reply, 200);
  return reply.body.seq;
}

async function epochOf(convoId: string): Promise<number> {
  const [row] = await db.query<{ epoch: number }>(`SELECT epoch FROM conversations WHERE id = $1`, [convoId]);
  return row!.epoch;
}

const texts = (messages: Json[]) =>
  messages.filter((m) => m.messageType === "app").map((m) => Buffer.from(m.ciphertext.$bytes, "base64").toString());

/** Alice's conversation in which Bob was a member, was removed while things happened, and was added again. */
async function rejoined() {
  const alice = unique("did:plc:alice");
  const bob = unique("did:plc:bob");
  const convoId = await api.createConvo(alice, [bob]);
  await send(alice, convoId, "before");
  await storeCommits(db, convoId, alice, [new Uint8Array([1])]);
  expectReply(await api.post(alice, "leaveConvo", { convoId, targetDid: bob }), 200);
  await send(alice, convoId, "while away 1");
  await storeCommits(db, convoId, alice, [new Uint8Array([2]), new Uint8Array([3])]);
  const awaySeq = await send(alice, convoId, "while away 2");
  const [{ head: awayEvent } = { head: 0 }] = await db.query<{ head: number }>(
    `SELECT next_event_seq - 1 AS head FROM conversations WHERE id = $1`,
    [convoId],
  );
  expectReply(await api.post(alice, "addMembers", { convoId, didList: [bob] }), 200);
  const rejoinEpoch = await epochOf(convoId);
  await send(alice, convoId, "after 1");
  await storeCommits(db, convoId, alice, [new Uint8Array([4])]);
  await send(alice, convoId, "after 2");
  return { alice, bob, convoId, awaySeq, awayEvent, rejoinEpoch };
}

describe("a member reads from their latest joining on", () => {
  it("getMessages shows a re-added member nothing from before their return, from any starting point", async () => {
    const { alice, bob, convoId, awaySeq } = await rejoined();
    const [away] = await db.query<{ id: string }>(`SELECT id FROM messages WHERE convo_id = $1 AND seq = $2`, [
      convoId,
      awaySeq,
    ]);

    for (const start of [{}, { sinceSeq: 0 }, { sinceSeq: 1 }, { sinceMessage: away!.id }, { cursor: "2" }]) {
      const reply = await api.get(bob, "getMessages", { convoId, ...start });
      expectReply(reply, 200);
      expect(texts(reply.body.messages), JSON.stringify(start)).toEqual(["after 1", "after 2"]);
      expect(reply.body.messages.every((m: Json) => m.seq > awaySeq)).toBe(true);
    }
    // The member who never left still reads everything.
    const all = await api.get(alice, "getMessages", { convoId });
    expect(texts(all.body.messages)).toEqual(["before", "while away 1", "while away 2", "after 1", "after 2"]);
  });

  it("getCommits gives a re-added member the commits from the epoch they rejoined at on", async () => {
    const { alice, bob, convoId, rejoinEpoch } = await rejoined();

    const bobs = await api.get(bob, "getCommits", { convoId, fromEpoch: 0 });
    expectReply(bobs, 200);
    expect(bobs.body.commits.map((c: Json) => c.epoch)).toEqual([rejoinEpoch]);
    const alices = await api.get(alice, "getCommits", { convoId, fromEpoch: 0 });
    expect(alices.body.commits.map((c: Json) => c.epoch)).toEqual([0, 1, 2, 3]);
  });

  it("events (stream pages) start at the member's latest joining: their own `joined`, nothing from while away", async () => {
    const { bob, convoId, awayEvent } = await rejoined();

    const page = (await readEvents(db, convoId, bob, 0, 100))!;
    expect(page.events[0]!.seq).toBe(awayEvent + 1);
    expect(page.events[0]).toMatchObject({ kind: "membership", membership: { type: "joined", did: bob } });
    const messages = page.events.flatMap((event) => (event.kind === "message" ? [event.message] : []));
    expect(texts(messages)).toEqual(["after 1", "after 2"]);

    // Over HTTP, a stream from an old cursor replays from the same place.
    const res = await app.request(`/xrpc/blue.catbird.mls.streamConvoEvents?convoId=${convoId}&cursor=1`, {
      headers: { Authorization: `Bearer ${await tokenFor(bob)}` },
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes(`"type":"joined"`)) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text).not.toContain("while away");
    expect(text).toContain(`id: ${awayEvent + 1}\n`);
  });
});

describe("a position older than retention is 400 CursorExpired", () => {
  /** What cleanup does to a conversation's oldest rows (retention removes a prefix of seqs). */
  async function prune(convoId: string, throughSeq: number, throughEventSeq: number) {
    await db.query(`DELETE FROM messages WHERE convo_id = $1 AND seq <= $2`, [convoId, throughSeq]);
    await db.query(`DELETE FROM events WHERE convo_id = $1 AND seq <= $2`, [convoId, throughEventSeq]);
  }

  it("getMessages: a cursor or sinceSeq before the oldest kept message; no position starts at the oldest kept", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    for (const n of range(1, 10)) await send(alice, convoId, `m${n}`);
    const [pruned] = await db.query<{ id: string }>(`SELECT id FROM messages WHERE convo_id = $1 AND seq = 2`, [
      convoId,
    ]);
    await prune(convoId, 5, 3);

    expectReply(await api.get(alice, "getMessages", { convoId, sinceMessage: pruned!.id }), 400, "CursorExpired");
    for (const start of [{ cursor: "3" }, { sinceSeq: 1 }, { sinceSeq: 4 }]) {
      expectReply(await api.get(alice, "getMessages", { convoId, ...start }), 400, "CursorExpired");
    }
    for (const start of [{}, { sinceSeq: 0 }, { cursor: "5" }, { sinceSeq: 7 }]) {
      const reply = await api.get(alice, "getMessages", { convoId, ...start });
      expectReply(reply, 200);
      expect(reply.body.messages[0].seq).toBe(Math.max(6, Number(Object.values(start)[0] ?? 0) + 1));
    }
  });

  it("getMessages: everything after the cursor removed is expired too", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    for (const n of range(1, 4)) await send(alice, convoId, `m${n}`);
    await prune(convoId, 4, 0);
    expectReply(await api.get(alice, "getMessages", { convoId, cursor: "2" }), 400, "CursorExpired");
    expect((await api.get(alice, "getMessages", { convoId, cursor: "4" })).body).toEqual({ messages: [] });
  });

  it("getCommits: asking for epochs whose commits retention removed", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    await storeCommits(
      db,
      convoId,
      alice,
      range(0, 5).map((n) => new Uint8Array([n + 1])),
    );
    await prune(convoId, 3, 0);

    expectReply(await api.get(alice, "getCommits", { convoId, fromEpoch: 0 }), 400, "CursorExpired");
    expectReply(await api.get(alice, "getCommits", { convoId, fromEpoch: 0, cursor: "1" }), 400, "CursorExpired");
    const kept = await api.get(alice, "getCommits", { convoId, fromEpoch: 3 });
    expectReply(kept, 200);
    expect(kept.body.commits.map((c: Json) => c.epoch)).toEqual([3, 4, 5]);
  });

  it("streamConvoEvents: a cursor before the oldest kept event is refused before the stream starts", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    for (const n of range(1, 6)) await send(alice, convoId, `m${n}`);
    await prune(convoId, 3, 4);

    const token = await tokenFor(alice);
    const expired = await app.request(`/xrpc/blue.catbird.mls.streamConvoEvents?convoId=${convoId}&cursor=2`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(expired.status).toBe(400);
    expect((await expired.json()).error).toBe("CursorExpired");
    await expect(eventHead(db, convoId, alice, 4)).resolves.toBe(7);
    await expect(eventHead(db, convoId, alice, 3)).rejects.toMatchObject({ error: "CursorExpired" });
  });
});

describe("createConvo with a groupId that exists", () => {
  const create = (caller: string, groupId: string, extra: Record<string, unknown> = {}) =>
    api.post(caller, "createConvo", { groupId, cipherSuite: SUITE, ...extra });

  it("answers the active creator's repeat with the conversation, and everyone else 409 ConvoExists with nothing more", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const stranger = unique("did:plc:stranger");
    const groupId = randomGroupId();
    const first = await create(alice, groupId, { initialMembers: [bob] });
    expectReply(first, 200);

    const repeat = await create(alice, groupId, { initialMembers: [bob] });
    expectReply(repeat, 200);
    expect(repeat.body.id).toBe(first.body.id);

    for (const caller of [bob, stranger]) {
      const reply = await create(caller, groupId);
      expectReply(reply, 409, "ConvoExists");
      expect(JSON.stringify(reply.body)).not.toContain(first.body.id);
    }

    // The creator leaves; a new member joins. The former creator learns nothing of the current roster.
    expectReply(await api.post(alice, "leaveConvo", { convoId: first.body.id }), 200);
    const carol = unique("did:plc:carol");
    expectReply(await api.post(bob, "addMembers", { convoId: first.body.id, didList: [carol] }), 200);
    const former = await create(alice, groupId, { initialMembers: [bob] });
    expectReply(former, 409, "ConvoExists");
    expect(JSON.stringify(former.body)).not.toContain(carol);
    expect(JSON.stringify(former.body)).not.toContain(first.body.id);
  });

  it("replays a keyed createConvo's own stored answer, never the current roster", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const groupId = randomGroupId();
    const body = { groupId, cipherSuite: SUITE, initialMembers: [bob], idempotencyKey: unique("key-") };
    const first = await api.post(alice, "createConvo", body);
    expectReply(first, 200);
    expectReply(await api.post(alice, "leaveConvo", { convoId: first.body.id }), 200);
    const carol = unique("did:plc:carol");
    expectReply(await api.post(bob, "addMembers", { convoId: first.body.id, didList: [carol] }), 200);

    const replayed = await api.post(alice, "createConvo", body);
    expectReply(replayed, 200);
    expect(replayed.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replayed.body).toEqual(first.body);
    expect(JSON.stringify(replayed.body)).not.toContain(carol);
    expectReply(await api.post(alice, "createConvo", { ...body, idempotencyKey: unique("key-") }), 409, "ConvoExists");
  });
});
