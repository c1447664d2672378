/**
 * Rule 1 and rule 8 on real Postgres: a member reads messages, commits and events from their (latest)
 * joining on, never what was sent while they were away; a position older than retention is 400
 * CursorExpired, never a silent skip; createConvo with an existing groupId reveals nothing to anyone
 * but the conversation's active creator (409 ConvoExists).
 */
import { afterAll, describe, expect, it } from "vitest";
import { eventHead, readEvents } from "../../src/services/events.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import type { ConvoStreamEvent, Input, Output } from "mls-delivery-service/client";
import { Api, expectRefusal, range, storeCommits, SUITE, text, utf8 } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const { app } = testApp(db);
const api = new Api(app);

async function send(did: string, convoId: string, text: string): Promise<number> {
  const reply = await api.as(did).sendMessage({ convoId, ciphertext: utf8(text), epoch: await epochOf(convoId) });
  expect(reply.status).toBe(200);
  return reply.data.seq;
}

async function epochOf(convoId: string): Promise<number> {
  const [row] = await db.query<{ epoch: number }>(`SELECT epoch FROM conversations WHERE id = $1`, [convoId]);
  return row!.epoch;
}

type Message = Output<"getMessages">["messages"][number];
const texts = (messages: { messageType: string; ciphertext: Uint8Array | { $bytes: string } }[]) =>
  messages
    .filter((m) => m.messageType === "app")
    .map((m) =>
      m.ciphertext instanceof Uint8Array ? text(m.ciphertext) : Buffer.from(m.ciphertext.$bytes, "base64").toString(),
    );

/** Alice's conversation in which Bob was a member, was removed while things happened, and was added again. */
async function rejoined() {
  const alice = unique("did:plc:alice");
  const bob = unique("did:plc:bob");
  const convoId = await api.createConvo(alice, [bob]);
  await send(alice, convoId, "before");
  await storeCommits(db, convoId, alice, [new Uint8Array([1])]);
  expect((await api.as(alice).leaveConvo({ convoId, targetDid: bob })).status).toBe(200);
  await send(alice, convoId, "while away 1");
  await storeCommits(db, convoId, alice, [new Uint8Array([2]), new Uint8Array([3])]);
  const awaySeq = await send(alice, convoId, "while away 2");
  const [{ head: awayEvent } = { head: 0 }] = await db.query<{ head: number }>(
    `SELECT next_event_seq - 1 AS head FROM conversations WHERE id = $1`,
    [convoId],
  );
  expect((await api.as(alice).addMembers({ convoId, didList: [bob] })).status).toBe(200);
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

    const starts: Partial<Input<"getMessages">>[] = [
      {},
      { sinceSeq: 0 },
      { sinceSeq: 1 },
      { sinceMessage: away!.id },
      { cursor: "2" },
    ];
    for (const start of starts) {
      const reply = await api.as(bob).getMessages({ convoId, ...start });
      expect(reply.status).toBe(200);
      expect(texts(reply.data.messages), JSON.stringify(start)).toEqual(["after 1", "after 2"]);
      expect(reply.data.messages.every((m: Message) => m.seq > awaySeq)).toBe(true);
    }
    // The member who never left still reads everything.
    const all = await api.as(alice).getMessages({ convoId });
    expect(texts(all.data.messages)).toEqual(["before", "while away 1", "while away 2", "after 1", "after 2"]);
  });

  it("getCommits gives a re-added member the commits from the epoch they rejoined at on", async () => {
    const { alice, bob, convoId, rejoinEpoch } = await rejoined();

    const bobs = await api.as(bob).getCommits({ convoId, fromEpoch: 0 });
    expect(bobs.status).toBe(200);
    expect(bobs.data.commits.map((c) => c.epoch)).toEqual([rejoinEpoch]);
    const alices = await api.as(alice).getCommits({ convoId, fromEpoch: 0 });
    expect(alices.data.commits.map((c) => c.epoch)).toEqual([0, 1, 2, 3]);
  });

  it("events (stream pages) start at the member's latest joining: their own `joined`, nothing from while away", async () => {
    const { bob, convoId, awayEvent } = await rejoined();

    const page = (await readEvents(db, convoId, bob, 0, 100))!;
    expect(page.events[0]!.seq).toBe(awayEvent + 1);
    expect(page.events[0]).toMatchObject({ kind: "membership", membership: { type: "joined", did: bob } });
    const messages = page.events.flatMap((event) => (event.kind === "message" ? [event.message] : []));
    expect(texts(messages)).toEqual(["after 1", "after 2"]);

    // Over HTTP, a stream from an old cursor replays from the same place.
    const stop = new AbortController();
    const streamed: ConvoStreamEvent[] = [];
    for await (const event of api.as(bob).streamConvoEvents({ convoId, cursor: 1 }, stop.signal)) {
      streamed.push(event);
      if (event.type === "membership" && event.data.type === "joined") break;
    }
    stop.abort();
    expect(streamed[0]).toMatchObject({ id: awayEvent + 1, type: "membership", data: { type: "joined", did: bob } });
    const streamedTexts = streamed.flatMap((event) => (event.type === "message" ? [text(event.data.ciphertext)] : []));
    expect(streamedTexts.filter((sent) => sent.includes("while away"))).toEqual([]);
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

    await expectRefusal(api.as(alice).getMessages({ convoId, sinceMessage: pruned!.id }), 400, "CursorExpired");
    for (const start of [{ cursor: "3" }, { sinceSeq: 1 }, { sinceSeq: 4 }]) {
      await expectRefusal(api.as(alice).getMessages({ convoId, ...start }), 400, "CursorExpired");
    }
    for (const start of [{}, { sinceSeq: 0 }, { cursor: "5" }, { sinceSeq: 7 }]) {
      const reply = await api.as(alice).getMessages({ convoId, ...start });
      expect(reply.status).toBe(200);
      expect(reply.data.messages[0]!.seq).toBe(Math.max(6, Number(Object.values(start)[0] ?? 0) + 1));
    }
  });

  it("getMessages: everything after the cursor removed is expired too", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    for (const n of range(1, 4)) await send(alice, convoId, `m${n}`);
    await prune(convoId, 4, 0);
    await expectRefusal(api.as(alice).getMessages({ convoId, cursor: "2" }), 400, "CursorExpired");
    expect((await api.as(alice).getMessages({ convoId, cursor: "4" })).data).toEqual({ messages: [] });
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

    await expectRefusal(api.as(alice).getCommits({ convoId, fromEpoch: 0 }), 400, "CursorExpired");
    await expectRefusal(api.as(alice).getCommits({ convoId, fromEpoch: 0, cursor: "1" }), 400, "CursorExpired");
    const kept = await api.as(alice).getCommits({ convoId, fromEpoch: 3 });
    expect(kept.status).toBe(200);
    expect(kept.data.commits.map((c) => c.epoch)).toEqual([3, 4, 5]);
  });

  it("streamConvoEvents: a cursor before the oldest kept event is refused before the stream starts", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    for (const n of range(1, 6)) await send(alice, convoId, `m${n}`);
    await prune(convoId, 3, 4);

    const expired = api.as(alice).streamConvoEvents({ convoId, cursor: 2 }).next();
    await expect(expired).rejects.toMatchObject({ status: 400, error: "CursorExpired" });
    await expect(eventHead(db, convoId, alice, 4)).resolves.toBe(7);
    await expect(eventHead(db, convoId, alice, 3)).rejects.toMatchObject({ error: "CursorExpired" });
  });
});

describe("createConvo with a groupId that exists", () => {
  const create = (caller: string, groupId: string, extra: Partial<Input<"createConvo">> = {}) =>
    api.as(caller).createConvo({ groupId, cipherSuite: SUITE, ...extra });
  /** A refusal's whole body ({error, message}: every answer's shape is checked), as text. */
  const bodyOf = ({ error, message }: { error: string; message: string }) => JSON.stringify({ error, message });

  it("answers the active creator's repeat with the conversation, and everyone else 409 ConvoExists with nothing more", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const stranger = unique("did:plc:stranger");
    const groupId = randomGroupId();
    const first = await create(alice, groupId, { initialMembers: [bob] });
    expect(first.status).toBe(200);

    const repeat = await create(alice, groupId, { initialMembers: [bob] });
    expect(repeat.status).toBe(200);
    expect(repeat.data.id).toBe(first.data.id);

    for (const caller of [bob, stranger]) {
      const refusal = await expectRefusal(create(caller, groupId), 409, "ConvoExists");
      expect(bodyOf(refusal)).not.toContain(first.data.id);
    }

    // The creator leaves; a new member joins. The former creator learns nothing of the current roster.
    expect((await api.as(alice).leaveConvo({ convoId: first.data.id })).status).toBe(200);
    const carol = unique("did:plc:carol");
    expect((await api.as(bob).addMembers({ convoId: first.data.id, didList: [carol] })).status).toBe(200);
    const former = await expectRefusal(create(alice, groupId, { initialMembers: [bob] }), 409, "ConvoExists");
    expect(bodyOf(former)).not.toContain(carol);
    expect(bodyOf(former)).not.toContain(first.data.id);
  });

  it("replays a keyed createConvo's own stored answer, never the current roster", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const groupId = randomGroupId();
    const body = { groupId, cipherSuite: SUITE, initialMembers: [bob], idempotencyKey: unique("key-") };
    const first = await api.as(alice).createConvo(body);
    expect(first.status).toBe(200);
    expect(first.replayed).toBe(false);
    expect((await api.as(alice).leaveConvo({ convoId: first.data.id })).status).toBe(200);
    const carol = unique("did:plc:carol");
    expect((await api.as(bob).addMembers({ convoId: first.data.id, didList: [carol] })).status).toBe(200);

    const replayed = await api.as(alice).createConvo(body);
    expect(replayed.status).toBe(200);
    expect(replayed.replayed).toBe(true);
    expect(replayed.data).toEqual(first.data);
    expect(JSON.stringify(replayed.data)).not.toContain(carol);
    const rekeyed = api.as(alice).createConvo({ ...body, idempotencyKey: unique("key-") });
    await expectRefusal(rekeyed, 409, "ConvoExists");
  });
});
