/**
 * What event streams cost the server, in process on real Postgres: caps on open streams (per caller and
 * in all), one database read per message for all streams of a conversation, and the gauge, counter and
 * log line that account for every stream.
 */
import { afterAll, describe, expect, it, vi } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { createLogger } from "../../src/logger.js";
import { readSharedEvents } from "../../src/services/sharedEvents.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { watchingPool } from "../helpers/faults.js";
import { clientFor } from "../helpers/client.js";
import { conversation, send, stream } from "./convo.js";
import type { OpenStream } from "./sseClient.js";

const db = testDatabase();
afterAll(() => db.close());

/** `db`, counting the statements that read the events table (stream reads; sends only write it). */
function countingEventReads(inner: Database) {
  const counter = { reads: 0 };
  const counted = watchingPool(inner, (sql) => {
    if (/\bFROM events\b/.test(sql)) counter.reads++;
  });
  return { counted, counter };
}

async function metric(app: ReturnType<typeof testApp>["app"], line: RegExp): Promise<number> {
  const text = await (await app.request("/metrics")).text();
  const found = text.split("\n").find((row) => line.test(row));
  return found === undefined ? 0 : Number(found.split(" ").at(-1));
}

describe("event stream limits and cost", () => {
  it("refuses a caller's stream beyond EVENTS_MAX_STREAMS_PER_CALLER with 429 and Retry-After, and frees the slot when one ends", async () => {
    const { app } = testApp(db, { EVENTS_MAX_STREAMS_PER_CALLER: "3" });
    const { bob, carol, convoId } = await conversation(app);
    const open: OpenStream[] = [];
    for (let i = 0; i < 3; i++) open.push(await stream(app, bob, { convoId }));
    expect(open.map((s) => s.status)).toEqual([200, 200, 200]);

    const refused = await stream(app, bob, { convoId });
    expect(refused.status).toBe(429);
    expect(await refused.response.json()).toMatchObject({ error: "RateLimitExceeded" });
    expect(Number(refused.response.headers.get("Retry-After"))).toBeGreaterThan(0);
    // Another caller is not affected.
    const other = await stream(app, carol, { convoId });
    expect(other.status).toBe(200);

    await open.pop()!.close();
    await vi.waitFor(async () => {
      const again = await stream(app, bob, { convoId });
      expect(again.status).toBe(200);
      open.push(again);
    });
    await Promise.all([...open, other].map((s) => s.close()));
  });

  it("refuses any stream beyond EVENTS_MAX_STREAMS on the instance", async () => {
    const { app } = testApp(db, { EVENTS_MAX_STREAMS: "2" });
    const { alice, bob, carol, convoId } = await conversation(app);
    const open = [await stream(app, alice, { convoId }), await stream(app, bob, { convoId })];
    const refused = await stream(app, carol, { convoId });
    expect(refused.status).toBe(429);
    expect(refused.response.headers.get("Retry-After")).not.toBeNull();
    await Promise.all(open.map((s) => s.close()));
  });

  it("N streams of one conversation cost far fewer than N reads per message: one shared read per wake-up", async () => {
    const { counted, counter } = countingEventReads(db);
    const { app } = testApp(counted, { EVENTS_MAX_STREAMS_PER_CALLER: "20" });
    const { alice, bob, carol, convoId } = await conversation(app);
    const streams: OpenStream[] = [];
    for (let i = 0; i < 6; i++)
      streams.push(await stream(app, bob, { convoId }), await stream(app, carol, { convoId }));
    const N = streams.length;
    const M = 10;
    // Every stream has done its first (own) read and waits.
    await vi.waitFor(() => expect(counter.reads).toBeGreaterThanOrEqual(N));

    const before = counter.reads;
    // Every stream reads as the messages come (a client that waits would let them pile up into fewer pages).
    const receiving = Promise.all(streams.map((s) => s.events!.take(M)));
    const sent = [];
    for (let i = 0; i < M; i++) sent.push(await send(app, alice, convoId, `fan-out ${i}`));
    const received = await receiving;
    const reads = counter.reads - before;
    for (const events of received) expect(events.map((e) => e.data.id)).toEqual(sent.map((m) => m.messageId));
    console.log(`${N} streams, ${M} messages: ${reads} reads of the events table`);
    expect(reads).toBeLessThan((N * M) / 4);
    await Promise.all(streams.map((s) => s.close()));
  });

  it("a shared read still ends the stream of a reader who is no longer a member, before anything after that", async () => {
    const { app, ctx } = testApp(db);
    const { alice, bob, carol, convoId } = await conversation(app);
    const bobs = await stream(app, bob, { convoId });
    const carols = await stream(app, carol, { convoId });
    // Membership ended without an event in the stream (as if by a path that writes none), and the streams
    // are woken as such a path would: the shared read that follows is what must end Bob's stream. (A send
    // batch's events are handed to the streams with the membership the feed last read, which only an event
    // can change: every path that ends a membership writes one, and a hand-off never skips an event.)
    await db.query(`UPDATE members SET left_at = now() WHERE convo_id = $1 AND did = $2`, [convoId, bob]);
    ctx.events.publish(convoId);
    const sent = await send(app, alice, convoId, "after bob is gone");

    expect((await carols.events!.nextParsed())?.data.id).toBe(sent.messageId);
    expect(await bobs.events!.nextParsed()).toBeUndefined();
    await Promise.all([bobs.close(), carols.close()]);
  });

  it("a shared page stops at its byte bound (never before one event), says more follow, and names the active readers", async () => {
    const { app } = testApp(db);
    const { alice, bob, convoId } = await conversation(app);
    for (let i = 0; i < 3; i++) await send(app, alice, convoId, "x".repeat(700)); // events 4, 5, 6
    const page = await readSharedEvents(db, convoId, [bob, "did:plc:nobody"], 3, 100, 1500);
    expect(page!.events.map((event) => event.seq)).toEqual([4, 5]);
    expect(page!.more).toBe(true);
    expect(page!.active).toEqual(new Set([bob]));
    expect((await readSharedEvents(db, convoId, [bob], 3, 100, 1))!.events.map((event) => event.seq)).toEqual([4]);
    const rest = await readSharedEvents(db, convoId, [bob], 5, 100, 1500);
    expect(rest).toMatchObject({ head: 6, cursor: 6, more: false });
    expect(rest!.events.map((event) => event.seq)).toEqual([6]);
  });

  it("replays in pages of at most MAX_PAGE_BYTES: one read per event when each event fills a page", async () => {
    const { counted, counter } = countingEventReads(db);
    const { app } = testApp(counted, { MAX_PAGE_BYTES: "1024" });
    const { alice, bob, convoId } = await conversation(app);
    for (let i = 0; i < 8; i++) await send(app, alice, convoId, "x".repeat(1200));
    const before = counter.reads;
    const bobs = await stream(app, bob, { convoId, cursor: 3 });
    for (let i = 0; i < 8; i++) expect((await bobs.events!.nextParsed())?.event).toBe("message");
    expect(counter.reads - before).toBeGreaterThanOrEqual(8);
    await bobs.close();
  });

  it("counts open streams in a gauge, and each end by reason in a counter and a log line", async () => {
    const lines: string[] = [];
    const { app } = testApp(
      db,
      {},
      undefined,
      createLogger("info", (line) => lines.push(line)),
    );
    const { alice, bob, carol, convoId } = await conversation(app);
    const bobs = await stream(app, bob, { convoId });
    const carols = await stream(app, carol, { convoId });
    expect(await metric(app, /^event_streams_open /)).toBe(2);

    await bobs.close();
    await vi.waitFor(async () => expect(await metric(app, /^event_streams_open /)).toBe(1));
    expect(await metric(app, /^event_streams_ended_total\{reason="client_closed"\}/)).toBe(1);

    await send(app, alice, convoId, "hi");
    expect((await clientFor(app, alice).leaveConvo({ convoId, targetDid: carol })).status).toBe(200);
    expect((await carols.events!.take(10)).at(-1)).toMatchObject({ event: "membership", data: { type: "removed" } });
    await vi.waitFor(async () => expect(await metric(app, /^event_streams_open /)).toBe(0));
    expect(await metric(app, /^event_streams_ended_total\{reason="removed"\}/)).toBe(1);

    const ended = lines.map((line) => JSON.parse(line)).filter((entry) => entry.message === "event stream ended");
    expect(ended.map((entry) => [entry.reader, entry.reason])).toEqual([
      [bob, "client_closed"],
      [carol, "removed"],
    ]);
    await carols.close();
  });
});
