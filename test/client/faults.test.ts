/**
 * Server faults end what would otherwise loop: an event stream that is not one, an event without a numeric id or
 * with data that does not decode, a line without end, getMessages pages that do not move forward. Streams that end
 * at once, or that repeat an event id, are reconnected with a growing backoff, not in a tight loop.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "mls-delivery-service/client";
import { readSse } from "../../src/client/sse.js";
import { within } from "../helpers/within.js";
import { fakeServer } from "./fakeServer.js";

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

/** A server answering every request with `contentType` and `body`, then ending it. */
async function answering(contentType: string, body: string) {
  const fake = await fakeServer((_, response) => {
    response.writeHead(200, { "Content-Type": contentType });
    response.end(body);
  });
  close = fake.close;
  return fake;
}

async function follow(url: string, ms: number, cursor: number | undefined = 0) {
  const stop = new AbortController();
  setTimeout(() => stop.abort(), ms);
  const client = createClient({ service: url, retry: { baseDelayMs: 20, deadlineMs: 1_000 } });
  let events = 0;
  try {
    for await (const _ of client.streamConvoEvents({ convoId: "c1", cursor }, stop.signal)) events++;
    return { events, error: undefined };
  } catch (error) {
    return { events, error };
  }
}

describe("event stream faults end the subscription", () => {
  for (const [fault, contentType, body] of [
    [
      "bytes that are not base64",
      "text/event-stream",
      ': open\nid: 0\n\ndata: {"ciphertext":{"$bytes":"!!!!"}}\nid: 1\n\n',
    ],
    ["an event without an id", "text/event-stream", ": open\nid: 0\n\ndata: {}\n\n"],
    ["an event with an id that is not a number", "text/event-stream", "data: {}\nid: seven\n\n"],
    ["data that is not JSON", "text/event-stream", "data: {\nid: 1\n\n"],
    ["a 200 answer that is not an event stream", "text/html", "<html>captive portal</html>"],
  ] as const) {
    it(fault, async () => {
      const fake = await answering(contentType, body);
      const { events, error } = await follow(fake.url, 3_000);
      expect(error).toMatchObject({ name: "ProtocolError" });
      expect([events, fake.requests]).toEqual([0, 1]);
    });
  }

  it("an id-only block that is no number leaves the cursor where it was", async () => {
    const cursors: (string | null)[] = [];
    const fake = await fakeServer((request, response) => {
      cursors.push(new URL(request.url!, "http://x").searchParams.get("cursor"));
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      response.end(cursors.length === 1 ? ": open\nid: 5\n\nevent: message\ndata: {}\nid: 6\n\nid:\n\n" : "");
    });
    close = fake.close;
    await follow(fake.url, 500);
    // Resumed after event 6, not from 0 (an empty id read as a number is 0).
    expect(cursors.slice(0, 2)).toEqual(["0", "6"]);
  });

  for (const [streams, body] of [
    ["that end at once", ": open\nid: 0\n\n"],
    ["that bring only info events (no progress)", ": open\nid: 0\n\nevent: info\ndata: {}\nid: 0\n\n"],
  ] as const) {
    it(`streams ${streams} are reconnected with a growing backoff`, async () => {
      const fake = await answering("text/event-stream", body);
      const { error } = await follow(fake.url, 1_500);
      expect(error).toBeUndefined();
      // 20 ms apart would be ~75; doubling from 20 ms (jittered) makes about 8.
      expect(fake.requests).toBeGreaterThan(2);
      expect(fake.requests).toBeLessThan(15);
    });
  }

  const repeated = 'event: message\ndata: {"seq":5}\nid: 5\n\n';
  for (const [when, cursor, body] of [
    ["from a cursor", 0, repeated],
    ["without a cursor", undefined, repeated],
    ["after an opening id behind it", undefined, `: open\nid: 4\n\n${repeated}`],
  ] as const) {
    it(`an event id that every connection repeats (${when}) is yielded once, and reconnects back off`, async () => {
      const fake = await answering("text/event-stream", body);
      const { events, error } = await follow(fake.url, 1_500, cursor);
      expect(error).toBeUndefined();
      expect(events).toBe(1);
      // Without backoff this is hundreds; doubling from 20 ms (jittered) makes about 9.
      expect(fake.requests).toBeGreaterThan(2);
      expect(fake.requests).toBeLessThan(20);
    });
  }
});

describe("the SSE reader on long lines", () => {
  /** `megabytes` of "a" in 64 KiB chunks, with no line end. */
  const endless = (megabytes: number) => {
    const chunk = new TextEncoder().encode("a".repeat(64 * 1024));
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= megabytes * 1024 * 1024) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
  };
  const drain = async (body: ReadableStream<Uint8Array>, options = {}) => {
    for await (const _ of readSse(body, options));
  };

  it("refuses a line over the cap (16 MiB), quickly: only new text is scanned for line ends", async () => {
    const began = Date.now();
    await expect(within(drain(endless(20)), 5_000)).rejects.toMatchObject({ name: "ProtocolError" });
    expect(Date.now() - began).toBeLessThan(5_000);
  });

  it("refuses an event whose lines together are over the cap", async () => {
    const lines = new TextEncoder().encode(`data: ${"a".repeat(1000)}\n`.repeat(20));
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => (controller.enqueue(lines), controller.close()),
    });
    await expect(drain(body, { maxEventLength: 10_000 })).rejects.toMatchObject({ name: "ProtocolError" });
  });
});

describe("answers past their caps", () => {
  /** A server answering `status` with a body of 1 MiB chunks that never ends; counts the bytes it got out. */
  async function endlessAnswer(status: number) {
    let written = 0;
    const chunk = Buffer.alloc(1024 * 1024, "a");
    const fake = await fakeServer((_, response) => {
      response.writeHead(status, { "Content-Type": "application/json" });
      const more = () => {
        while (!response.destroyed && response.write(chunk)) written += chunk.length;
      };
      response.on("drain", more);
      more();
    });
    close = fake.close;
    return { url: fake.url, written: () => written };
  }

  it("refuses an answer longer than 64 MiB instead of holding it", async () => {
    const fake = await endlessAnswer(200);
    const client = createClient({ service: fake.url, retry: { deadlineMs: 20_000 } });
    await expect(client.getConvos({})).rejects.toMatchObject({ name: "ProtocolError" });
    expect(fake.written()).toBeLessThan(200 * 1024 * 1024);
  });

  it("leaves an error answer unread past 64 KiB and reports its status", async () => {
    const fake = await endlessAnswer(400);
    const client = createClient({ service: fake.url, retry: { deadlineMs: 5_000 } });
    await expect(client.getConvos({})).rejects.toMatchObject({ name: "XrpcClientError", status: 400 });
    expect(fake.written()).toBeLessThan(64 * 1024 * 1024);
  });
});

describe("allMessages", () => {
  /** A client whose server answers page `n` (from 1) with `answer(n)` (an undefined seq: none); it gives up past 20 pages. */
  const paging = (answer: (page: number) => { seqs: (number | undefined)[]; cursor?: string } | null) => {
    let pages = 0;
    const client = createClient({
      service: "http://mls.invalid",
      fetch: () => {
        if (++pages > 20) throw new Error("still paging");
        const page = answer(pages);
        if (!page) return Response.json(null);
        return Response.json({
          messages: page.seqs.map((seq) => ({ seq })),
          cursor: page.cursor,
        });
      },
    });
    return { client, pages: () => pages };
  };
  const read = async (client: ReturnType<typeof createClient>, sinceSeq?: number) => {
    const seqs = [];
    for await (const message of client.allMessages({ convoId: "c1", sinceSeq })) seqs.push(message.seq);
    return seqs;
  };

  /** A page as the server's are: it ends with the message its cursor names. */
  const upTo = (seq: number) => ({ seqs: [seq], cursor: String(seq) });
  it.each([
    { when: "cursors come back in a cycle", answer: (page: number) => upTo(page % 2 ? 5 : 9), pages: 3 },
    { when: "the cursor does not move", answer: () => upTo(5), pages: 2 },
    {
      when: "ever-new cursors come with the same messages",
      answer: (page: number) => ({ seqs: [4, 5], cursor: String(page) }),
      pages: 2,
    },
    {
      when: "ever-new cursors come with a message without a seq",
      answer: (page: number) => ({ seqs: [undefined], cursor: String(page) }),
      pages: 1,
    },
    {
      when: "a page with a cursor holds no message",
      answer: (page: number) => ({ seqs: [], cursor: String(page) }),
      pages: 1,
    },
  ])("throws when $when", async ({ answer, pages: expected }) => {
    const { client, pages } = paging(answer);
    await expect(read(client)).rejects.toMatchObject({ name: "ProtocolError" });
    expect(pages()).toBe(expected);
  });

  it("throws on messages at or before sinceSeq, the caller's own, and on an answer that is no page", async () => {
    const stale = paging(() => ({ seqs: [1, 2] }));
    await expect(read(stale.client, 100)).rejects.toMatchObject({ name: "ProtocolError" });
    const none = paging(() => null);
    await expect(read(none.client)).rejects.toMatchObject({ name: "ProtocolError" });
    const after = paging(() => ({ seqs: [101, 102] }));
    expect(await read(after.client, 100)).toEqual([101, 102]);
  });

  it("reads every page to the end", async () => {
    const { client, pages } = paging((page) =>
      page < 3 ? { seqs: [2 * page - 1, 2 * page], cursor: String(2 * page) } : { seqs: [5] },
    );
    expect(await read(client)).toEqual([1, 2, 3, 4, 5]);
    expect(pages()).toBe(3);
  });
});
