/**
 * getMessages answers with JSON the database built: on real Postgres over HTTP, the body is byte for
 * byte what the JS mapping of the stored rows (`messageView`, `JSON.stringify`) gives, base64 flavour
 * included (padded standard alphabet, no line breaks); pages stay bounded in bytes; and every refusal
 * is the same status, error and message as before. The pages are read raw (`Xrpc`): their exact text is the point;
 * everything else goes through the typed client.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { messageView, type MessageRow } from "../../src/services/messages.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { Api, expectRefusal, expectReply, ok, randomBytes, range, storeCommits, Xrpc, type Params } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const MAX_PAGE_BYTES = 16 * 1024;
const { app } = testApp(db);
const { app: boundedApp } = testApp(db, { MAX_PAGE_BYTES: String(MAX_PAGE_BYTES) });
const api = new Api(app);
const bounded = new Api(boundedApp);
/** Raw reads, for the pages' exact text. */
const raw = new Xrpc(app);
const rawBounded = new Xrpc(boundedApp);

/** The answer as the handler built it in JS: `messageView` of each stored row, `cursor` after the last when more follow. */
async function jsAnswer(convoId: string, seqs: number[], more: boolean): Promise<string> {
  const rows = await db.query<Omit<MessageRow, "created_at"> & { created_at: Date }>(
    `SELECT id, sender_did, sender_device, ciphertext, epoch, seq, message_type, created_at
       FROM messages WHERE convo_id = $1 AND seq = ANY($2::bigint[]) ORDER BY seq`,
    [convoId, seqs],
  );
  expect(rows.map((row) => row.seq)).toEqual(seqs);
  const messages = rows.map((row) => messageView(convoId, { ...row, created_at: row.created_at.toISOString() }));
  return JSON.stringify({ messages, ...(more && { cursor: String(seqs.at(-1)) }) });
}

async function send(client: Api, did: string, convoId: string, bytes: Uint8Array): Promise<void> {
  await ok(client.as(did).sendMessage({ convoId, ciphertext: bytes, epoch: 0 }));
}

/** Bytes whose base64 starts with "+///" (and so holds both characters base64 could spell otherwise). */
const withPlusAndSlash = (length: number) => {
  const bytes = randomBytes(length);
  bytes.set([0xfb, 0xff, 0xff].slice(0, length));
  return bytes;
};

describe("the page's JSON, built by the database", () => {
  const alice = unique("did:plc:alice");
  const bob = unique("did:plc:bob");
  // 57 bytes are exactly one base64 line of 76 characters; longer ones span several.
  const lengths = [1, 2, 3, 56, 57, 58, 300, 4000];
  let convoId: string;

  beforeAll(async () => {
    convoId = await api.createConvo(alice, [bob]);
    for (const length of lengths) await send(api, alice, convoId, withPlusAndSlash(length));
    await storeCommits(db, convoId, alice, [withPlusAndSlash(100)]);
  });

  it("is byte for byte the JS mapping, ciphertexts longer than a base64 line and with '+' and '/' included", async () => {
    const reply = await raw.get(bob, "getMessages", { convoId });

    expectReply(reply, 200);
    expect(reply.headers.get("Content-Type")).toBe("application/json");
    expect(reply.text).toBe(await jsAnswer(convoId, range(1, lengths.length + 1), false));
    const encoded: string[] = reply.body.messages.map(
      (message: { ciphertext: { $bytes: string } }) => message.ciphertext.$bytes,
    );
    expect(encoded.some((text) => text.length > 76 * 3)).toBe(true);
    expect(encoded.every((text) => text.startsWith("+///") || text === "+w==" || text === "+/8=")).toBe(true);
    expect(reply.body.messages.at(-1).messageType).toBe("commit");
  });

  it("adds the cursor exactly as before when more follow, and none on the last page", async () => {
    const first = await raw.get(bob, "getMessages", { convoId, limit: 4 });
    expect(first.text).toBe(await jsAnswer(convoId, range(1, 4), true));

    const last = await raw.get(bob, "getMessages", { convoId, cursor: first.body.cursor, limit: 5 });
    expect(last.text).toBe(await jsAnswer(convoId, range(5, 9), false));

    const past = await raw.get(bob, "getMessages", { convoId, sinceSeq: 9 });
    expect(past.text).toBe(`{"messages":[]}`);
  });
});

describe("a page bounded by bytes", () => {
  it("stops before MAX_PAGE_BYTES (a larger message alone), each page byte for byte the JS mapping", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await bounded.createConvo(alice);
    // About four of these fit in a page; the seventh is far over the bound.
    for (const n of range(1, 12))
      await send(bounded, alice, convoId, withPlusAndSlash(n === 7 ? 3 * MAX_PAGE_BYTES : 3000));

    const seqs: number[][] = [];
    let params: Params = { convoId, limit: 100 };
    for (;;) {
      const reply = await rawBounded.get(alice, "getMessages", params);
      expectReply(reply, 200);
      const page: number[] = reply.body.messages.map((message: { seq: number }) => message.seq);
      const more = reply.body.cursor !== undefined;
      expect(reply.text).toBe(await jsAnswer(convoId, page, more));
      if (page.length > 1) expect(reply.text.length).toBeLessThanOrEqual(MAX_PAGE_BYTES);
      seqs.push(page);
      if (!more) break;
      expect(seqs.length).toBeLessThan(12);
      params = { convoId, limit: 100, cursor: reply.body.cursor };
    }

    expect(seqs.flat()).toEqual(range(1, 12));
    expect(seqs.length).toBeGreaterThan(3);
    expect(seqs.find((page) => page.includes(7))).toEqual([7]);
  });
});

describe("refusals are what they were", () => {
  const alice = unique("did:plc:alice");
  const bob = unique("did:plc:bob");
  const stranger = unique("did:plc:stranger");
  let convoId: string;
  let prunedId: string;

  beforeAll(async () => {
    convoId = await api.createConvo(alice, [bob]);
    for (const n of range(1, 6)) await send(api, alice, convoId, randomBytes(n));
    const [row] = await db.query<{ id: string }>(`SELECT id FROM messages WHERE convo_id = $1 AND seq = 2`, [convoId]);
    prunedId = row!.id;
    // What retention does: the oldest seqs go.
    await db.query(`DELETE FROM messages WHERE convo_id = $1 AND seq <= 3`, [convoId]);
    await ok(api.as(alice).leaveConvo({ convoId, targetDid: bob }));
  });

  const notMember = { error: "NotMember", message: "caller is not an active member of this conversation" };

  it("403 NotMember for a stranger and for a member who left, before any check of the position", async () => {
    for (const caller of [stranger, bob]) {
      for (const start of [{}, { cursor: "1" }, { sinceMessage: "no-such-message" }]) {
        const { error, message } = await expectRefusal(api.as(caller).getMessages({ convoId, ...start }), 403);
        expect({ error, message }).toEqual(notMember);
      }
    }
  });

  it("404 ConvoNotFound for a conversation that does not exist", async () => {
    const reply = api.as(alice).getMessages({ convoId: unique("no-such-convo-"), cursor: "1" });
    const { error, message } = await expectRefusal(reply, 404);
    expect({ error, message }).toEqual({ error: "ConvoNotFound", message: "conversation not found" });
  });

  it("400 CursorExpired for a position retention passed, by cursor, sinceSeq or sinceMessage", async () => {
    for (const start of [{ cursor: "1" }, { sinceSeq: 2 }]) {
      const { error, message } = await expectRefusal(api.as(alice).getMessages({ convoId, ...start }), 400);
      expect({ error, message }).toEqual({
        error: "CursorExpired",
        message: "messages after this position were removed by retention; read again without a position",
      });
    }
    for (const sinceMessage of [prunedId, "no-such-message"]) {
      const { error, message } = await expectRefusal(api.as(alice).getMessages({ convoId, sinceMessage }), 400);
      expect({ error, message }).toEqual({
        error: "CursorExpired",
        message: "sinceMessage names no message kept in this conversation",
      });
    }
    const kept = await raw.get(alice, "getMessages", { convoId, cursor: "3" });
    expect(kept.text).toBe(await jsAnswer(convoId, range(4, 6), false));
  });

  it("400 InvalidRequest for a sinceMessage of no message in a conversation retention never touched, or two starting points", async () => {
    const untouched = await api.createConvo(alice);
    await send(api, alice, untouched, randomBytes(8));
    const unknown = api.as(alice).getMessages({ convoId: untouched, sinceMessage: "no-such-message" });
    const { error, message } = await expectRefusal(unknown, 400);
    expect({ error, message }).toEqual({
      error: "InvalidRequest",
      message: "sinceMessage names no message of this conversation",
    });

    const [row] = await db.query<{ id: string }>(`SELECT id FROM messages WHERE convo_id = $1`, [untouched]);
    const since = await raw.get(alice, "getMessages", { convoId: untouched, sinceMessage: row!.id });
    expect(since.text).toBe(`{"messages":[]}`);

    await expectRefusal(
      api.as(alice).getMessages({ convoId: untouched, sinceSeq: 0, cursor: "1" }),
      400,
      "InvalidRequest",
    );
  });
});
