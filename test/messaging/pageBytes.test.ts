/**
 * Every list answer and stream page is bounded in bytes (MAX_PAGE_BYTES) as well as in items, on real
 * Postgres: with a small bound, pages stop early with a cursor, each page's JSON stays within the bound
 * (a single larger item still comes, alone), and following the cursor returns everything exactly once, in order.
 * Pages are read raw (`Xrpc`): their size in bytes on the wire is the point; the set-up goes through the typed client.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readEvents } from "../../src/services/events.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import {
  Api,
  base64,
  expectReply,
  ok,
  randomBytes,
  range,
  storeCommits,
  Xrpc,
  type Json,
  type Params,
} from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const MAX_PAGE_BYTES = 64 * 1024;
const { app } = testApp(db, { MAX_PAGE_BYTES: String(MAX_PAGE_BYTES) });
const api = new Api(app);
/** Raw reads, for the pages' size as sent. */
const raw = new Xrpc(app);
/** About six of these fit in one page. */
const ITEM_BYTES = 8 * 1024;

/** Follows `cursor` from the first page to the last, checking each page's size; returns every page. */
async function walk(caller: string, method: string, params: Params): Promise<Json[]> {
  const pages: Json[] = [];
  let cursor: string | undefined;
  for (;;) {
    const reply = await raw.get(caller, method, { ...params, cursor });
    expectReply(reply, 200);
    pages.push(reply.body);
    expect(pages.length, "more pages than items").toBeLessThanOrEqual(200);
    if (reply.body.cursor === undefined) return pages;
    cursor = reply.body.cursor;
  }
}

/** Every page within the bound unless it holds a single item; more than one page. */
function expectBounded(pages: Json[], items: (page: Json) => unknown[]) {
  expect(pages.length).toBeGreaterThan(1);
  for (const page of pages) {
    const size = JSON.stringify(page).length;
    if (items(page).length > 1) expect(size, "page JSON size").toBeLessThanOrEqual(MAX_PAGE_BYTES);
    expect(items(page).length).toBeGreaterThanOrEqual(1);
  }
}

describe("getMessages", () => {
  const alice = unique("did:plc:alice");
  const sent: string[] = [];
  let convoId: string;

  beforeAll(async () => {
    convoId = await api.createConvo(alice);
    for (const n of range(1, 40)) {
      // One message far over the bound, alone on its page.
      const ciphertext = randomBytes(n === 17 ? 3 * MAX_PAGE_BYTES : ITEM_BYTES);
      await ok(api.as(alice).sendMessage({ convoId, ciphertext, epoch: 0 }));
      sent.push(base64(ciphertext));
    }
  });

  it("stops pages before MAX_PAGE_BYTES with a cursor; the cursor walk returns every message once, in order", async () => {
    const pages = await walk(alice, "getMessages", { convoId, limit: 100 });

    expectBounded(pages, (page) => page.messages);
    const messages = pages.flatMap((page) => page.messages);
    expect(messages.map((message: Json) => message.seq)).toEqual(range(1, 40));
    expect(messages.map((message: Json) => message.ciphertext.$bytes)).toEqual(sent);
    expect(pages.find((page) => page.messages.some((message: Json) => message.seq === 17)).messages).toHaveLength(1);
  });

  it("still pages by item count under the byte bound", async () => {
    const pages = await walk(alice, "getMessages", { convoId, limit: 2 });
    expect(pages.flatMap((page) => page.messages.map((message: Json) => message.seq))).toEqual(range(1, 40));
    expect(pages.every((page) => page.messages.length <= 2)).toBe(true);
  });
});

describe("getCommits", () => {
  const alice = unique("did:plc:alice");
  let convoId: string;

  beforeAll(async () => {
    convoId = await api.createConvo(alice);
    await storeCommits(
      db,
      convoId,
      alice,
      range(0, 29).map(() => randomBytes(ITEM_BYTES)),
    );
  });

  it("pages with a cursor (the last epoch) within MAX_PAGE_BYTES; the walk returns every commit once, in order", async () => {
    const pages = await walk(alice, "getCommits", { convoId, fromEpoch: 0 });

    expectBounded(pages, (page) => page.commits);
    expect(pages.flatMap((page) => page.commits.map((commit: Json) => commit.epoch))).toEqual(range(0, 29));
    for (const page of pages.slice(0, -1)) expect(page.cursor).toBe(String(page.commits.at(-1).epoch));
  });

  it("keeps fromEpoch, toEpoch and limit while paging", async () => {
    const pages = await walk(alice, "getCommits", { convoId, fromEpoch: 5, toEpoch: 20, limit: 4 });
    expect(pages.flatMap((page) => page.commits.map((commit: Json) => commit.epoch))).toEqual(range(5, 20));
    expect(pages.every((page) => page.commits.length <= 4)).toBe(true);
  });
});

describe("getConvos", () => {
  it("bounds a page of conversation views (they grow with their members) and pages through them all", async () => {
    const alice = unique("did:plc:alice");
    // Long DIDs: each view is about 12 KiB, so about five fit in a page.
    const members = (n: number) => range(1, 40).map((i) => unique(`did:plc:${"m".repeat(250)}${n}x${i}x`));
    const created: string[] = [];
    for (const n of range(1, 12)) created.push(await api.createConvo(alice, members(n)));

    const pages = await walk(alice, "getConvos", { limit: 100 });

    expectBounded(pages, (page) => page.conversations);
    expect(pages.flatMap((page) => page.conversations.map((convo: Json) => convo.id))).toEqual(created.reverse());
  });
});

describe("event stream pages (readEvents)", () => {
  it("stops a page before maxBytes; the page's cursor is its last event; following it reads every event once", async () => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    for (let n = 0; n < 30; n++) {
      await ok(api.as(alice).sendMessage({ convoId, ciphertext: randomBytes(ITEM_BYTES), epoch: 0 }));
    }
    const seqs: number[] = [];
    let cursor = 0;
    let pages = 0;
    for (;;) {
      const page = (await readEvents(db, convoId, alice, cursor, 100, { maxBytes: MAX_PAGE_BYTES }))!;
      pages++;
      expect(page.events.length).toBeGreaterThanOrEqual(1);
      expect(JSON.stringify(page.events).length).toBeLessThanOrEqual(MAX_PAGE_BYTES);
      expect(page.cursor).toBe(page.events.at(-1)!.seq);
      seqs.push(...page.events.map((event) => event.seq));
      cursor = page.cursor;
      if (!page.more) break;
      expect(pages).toBeLessThan(100);
    }
    // The creator's `joined` event, then one event per message.
    expect(seqs).toEqual(range(1, 31));
    expect(pages).toBeGreaterThan(1);
  });
});
