/**
 * getMessages paging on real Postgres (rule 2): ascending seq, a `cursor` on every page but the last, and the
 * older `sinceSeq`/`sinceMessage` starting points.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import type { Input, Output } from "mls-delivery-service/client";
import { Api, expectRefusal, range, storedMessages, utf8 } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);
type Page = Output<"getMessages">;

const TOTAL = 1000;
const alice = unique("did:plc:alice");
const bob = unique("did:plc:bob");
let convoId: string;

beforeAll(async () => {
  convoId = await api.createConvo(alice, [bob]);
  for (let batch = 0; batch < TOTAL / 50; batch++) {
    const replies = await Promise.all(
      range(1, 50).map((n) =>
        api.as(n % 2 ? alice : bob).sendMessage({ convoId, ciphertext: utf8(`message ${batch * 50 + n}`), epoch: 0 }),
      ),
    );
    for (const reply of replies) expect(reply.status).toBe(200);
  }
});

/** Follows `cursor` from the first page to the last; returns every page. */
async function walk(limit: number, start: Partial<Input<"getMessages">> = {}): Promise<Page[]> {
  const pages: Page[] = [];
  let params: Partial<Input<"getMessages">> = { ...start };
  for (;;) {
    const reply = await api.as(bob).getMessages({ convoId, limit, ...params });
    expect(reply.status).toBe(200);
    pages.push(reply.data);
    if (reply.data.cursor === undefined) return pages;
    expect(pages.length, "more pages than messages").toBeLessThanOrEqual(TOTAL);
    params = { cursor: reply.data.cursor };
  }
}

const seqsOf = (pages: Page[]) => pages.flatMap((page) => page.messages.map((message) => message.seq));

describe("getMessages paging", () => {
  it("walks 1,000 messages 37 at a time: every seq once, in order, the last page without a cursor", async () => {
    const pages = await walk(37);

    expect(seqsOf(pages)).toEqual(range(1, TOTAL));
    expect(pages).toHaveLength(Math.ceil(TOTAL / 37));
    for (const page of pages.slice(0, -1)) expect(page.messages).toHaveLength(37);
    expect(pages.at(-1)!.messages).toHaveLength(TOTAL % 37);
    expect(pages.at(-1)).not.toHaveProperty("cursor");
  });

  it("ends without an empty page when the total is a multiple of the limit", async () => {
    const pages = await walk(100);
    expect(pages).toHaveLength(10);
    expect(seqsOf(pages)).toEqual(range(1, TOTAL));
    expect(pages.every((page) => page.messages.length === 100)).toBe(true);
  });

  it("returns the stored rows exactly, in seq order", async () => {
    const rows = await storedMessages(db, convoId);
    const messages = (await walk(100)).flatMap((page) => page.messages);
    expect(messages).toEqual(
      rows.map((row) => ({
        id: row.id,
        convoId,
        sender: row.sender_did,
        senderDevice: "",
        ciphertext: new Uint8Array(row.ciphertext),
        epoch: 0,
        seq: row.seq,
        messageType: "app",
        createdAt: row.created_at.toISOString(),
      })),
    );
  });

  it("uses 50 as the default limit", async () => {
    const reply = await api.as(bob).getMessages({ convoId });
    expect(reply.data.messages.map((message) => message.seq)).toEqual(range(1, 50));
    expect(reply.data.cursor).toBeDefined();
  });

  it("starts after sinceSeq", async () => {
    expect(seqsOf(await walk(37, { sinceSeq: 500 }))).toEqual(range(501, TOTAL));
    expect(seqsOf(await walk(37, { sinceSeq: 0 }))).toEqual(range(1, TOTAL));
    const atEnd = await api.as(bob).getMessages({ convoId, sinceSeq: TOTAL });
    expect(atEnd.data).toEqual({ messages: [] });
    const beyond = await api.as(bob).getMessages({ convoId, sinceSeq: TOTAL + 50 });
    expect(beyond.data).toEqual({ messages: [] });
  });

  it("starts after sinceMessage", async () => {
    const [row] = await db.query<{ id: string }>(`SELECT id FROM messages WHERE convo_id = $1 AND seq = 700`, [
      convoId,
    ]);
    expect(seqsOf(await walk(37, { sinceMessage: row!.id }))).toEqual(range(701, TOTAL));
  });

  it("refuses a sinceMessage of another conversation or none at all", async () => {
    const otherConvo = await api.createConvo(bob);
    const sent = await api.as(bob).sendMessage({ convoId: otherConvo, ciphertext: utf8("x"), epoch: 0 });
    expect(sent.status).toBe(200);

    const foreign = api.as(bob).getMessages({ convoId, sinceMessage: sent.data.messageId });
    await expectRefusal(foreign, 400, "InvalidRequest");
    await expectRefusal(api.as(bob).getMessages({ convoId, sinceMessage: "no-such-message" }), 400, "InvalidRequest");
  });

  it("refuses more than one starting point", async () => {
    const [row] = await db.query<{ id: string }>(`SELECT id FROM messages WHERE convo_id = $1 AND seq = 1`, [convoId]);
    for (const params of [
      { cursor: "37", sinceSeq: 10 },
      { cursor: "37", sinceMessage: row!.id },
      { sinceSeq: 10, sinceMessage: row!.id },
    ]) {
      await expectRefusal(api.as(bob).getMessages({ convoId, ...params }), 400, "InvalidRequest");
    }
  });
});
