/**
 * streamConvoEvents in process, on real Postgres: what the events carry, where a stream starts, keep-alives,
 * slow consumers, and delivery by polling when no wake-up arrives.
 */
import { afterAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { EventBus } from "../../src/events/bus.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { clientFor } from "../helpers/client.js";
import { xrpc } from "../helpers/xrpc.js";
import { base64, conversation, send, stream } from "./convo.js";

const db = testDatabase();
afterAll(() => db.close());

describe("streamConvoEvents", () => {
  it("replays from cursor 0 every event in order, then continues live", async () => {
    const { app } = testApp(db);
    const { alice, bob, carol, convoId } = await conversation(app);
    const hello = await send(app, alice, convoId, "hello");
    const hi = await send(app, bob, convoId, "hi");
    const dave = unique("did:plc:dave");
    expect((await clientFor(app, alice).addMembers({ convoId, didList: [dave] })).status).toBe(200);

    const { status, response, events } = await stream(app, bob, { convoId, cursor: 0 });
    expect(status).toBe(200);
    expect(response.headers.get("Content-Type")).toMatch(/^text\/event-stream/);
    const message = (sent: typeof hello, sender: string, text: string) => ({
      id: sent.messageId,
      convoId,
      sender,
      senderDevice: "",
      ciphertext: { $bytes: base64(text) },
      epoch: 0,
      seq: sent.seq,
      messageType: "app",
      createdAt: sent.receivedAt,
    });
    expect(await events!.take(6)).toEqual([
      { cursor: 1, event: "membership", data: { type: "joined", did: alice, epoch: 0 } },
      { cursor: 2, event: "membership", data: { type: "joined", did: bob, epoch: 0 } },
      { cursor: 3, event: "membership", data: { type: "joined", did: carol, epoch: 0 } },
      { cursor: 4, event: "message", data: message(hello, alice, "hello") },
      { cursor: 5, event: "message", data: message(hi, bob, "hi") },
      { cursor: 6, event: "membership", data: { type: "joined", did: dave, actor: alice, epoch: 0 } },
    ]);

    const live = await send(app, dave, convoId, "live");
    expect(await events!.nextParsed()).toEqual({ cursor: 7, event: "message", data: message(live, dave, "live") });
    await events!.cancel();
  });

  it("starts at the newest event without a cursor, and after Last-Event-ID (which wins over cursor) with one, saying where", async () => {
    const { app } = testApp(db);
    const { alice, bob, convoId } = await conversation(app);
    const fresh = await stream(app, bob, { convoId });
    const resumed = await stream(app, bob, { convoId, cursor: 0, lastEventId: 2 });
    // Each opens with its starting cursor as its last event id (no event): the newest (3), or where it resumes.
    expect([fresh.events!.lastEventId, resumed.events!.lastEventId]).toEqual(["3", "2"]);
    const sent = await send(app, alice, convoId, "after both opened");

    const first = await fresh.events!.nextParsed();
    expect(first).toMatchObject({ cursor: 4, event: "message", data: { id: sent.messageId } });
    expect((await resumed.events!.take(2)).map((event) => event.cursor)).toEqual([3, 4]);
    await Promise.all([fresh.close(), resumed.close()]);
  });

  it("refuses bad and future cursors, unknown conversations and missing tokens before any event", async () => {
    const { app } = testApp(db);
    const { bob, convoId } = await conversation(app);
    const path = (query: string) => `/xrpc/blue.catbird.mls.streamConvoEvents?${query}`;
    const bad = [
      { request: { convoId, cursor: "soon" }, status: 400, error: "InvalidRequest" },
      { request: { convoId, cursor: "4" }, status: 400, error: "InvalidRequest" }, // only 3 events exist
      { request: { convoId, lastEventId: "abc" }, status: 400, error: "InvalidRequest" },
      { request: { convoId: "no-such-convo" }, status: 404, error: "ConvoNotFound" },
    ];
    for (const { request, status, error } of bad) {
      const reply = await xrpc(app, bob, "streamConvoEvents", {
        query: { convoId: request.convoId, ...(request.cursor && { cursor: request.cursor }) },
        headers: request.lastEventId ? { "Last-Event-ID": request.lastEventId } : {},
      });
      expect(reply.status, JSON.stringify(request)).toBe(status);
      expect(reply.body.error).toBe(error);
    }
    const anonymous = await app.request(path(`convoId=${convoId}`));
    expect(anonymous.status).toBe(401);
  });

  it("sends keep-alive comments while nothing happens", async () => {
    const { app } = testApp(db, { EVENTS_KEEPALIVE_MS: "20" });
    const { bob, convoId } = await conversation(app);
    const { events } = await stream(app, bob, { convoId });
    expect(await events!.untilComments(4)).toBe(true);
    expect(events!.comments).toEqual(["open", "keep-alive", "keep-alive", "keep-alive"]);
    await events!.cancel();
  });

  it("tells a client that fell behind how much it skipped, ends the stream, and lets it resume from its cursor", async () => {
    // A write the client does not take stays pending: the backlog, not the write timeout, ends this stream.
    const { app } = testApp(db, { EVENTS_MAX_BACKLOG: "5", EVENTS_WRITE_TIMEOUT_MS: "600000" });
    const { alice, bob, convoId } = await conversation(app);
    const { events } = await stream(app, bob, { convoId });
    const sent = [];
    for (let i = 0; i < 20; i++) sent.push(await send(app, alice, convoId, `burst ${i}`));

    const received = await events!.take(Number.MAX_SAFE_INTEGER);
    const info = received.pop()!;
    expect(received.every((event) => event.event === "message")).toBe(true);
    expect(info.event).toBe("info");
    expect(info.data.type).toBe("slow-consumer");
    expect(info.data.skipped).toBeGreaterThan(5);
    expect(received.length + info.data.skipped).toBeLessThanOrEqual(20);
    expect(info.cursor).toBe(received.at(-1)?.cursor ?? 3);

    const resumed = await stream(app, bob, { convoId, lastEventId: info.cursor });
    const rest = await resumed.events!.take(20 - received.length);
    await resumed.close();
    expect([...received, ...rest].map((event) => event.data.id)).toEqual(sent.map((message) => message.messageId));
  });

  it("delivers by polling the events table when no wake-up arrives (no LISTEN, writes through another instance)", async () => {
    const writer = testApp(db).app;
    const { ctx } = testApp(db);
    const events = new EventBus({ db, logger: ctx.logger, pollMs: 20, safetyPollMs: 20, listen: false });
    const polling = createApp({ ...ctx, events });
    const { alice, bob, convoId } = await conversation(writer);
    const opened = await stream(polling, bob, { convoId });
    const sent = [await send(writer, alice, convoId, "one"), await send(writer, alice, convoId, "two")];
    expect((await opened.events!.take(2)).map((event) => event.data.id)).toEqual(sent.map((m) => m.messageId));
    await opened.close();
    await events.close();
  });

  it("LISTEN on the postgres.js adapter hears pg_notify from any connection", async () => {
    const channel = unique("test_channel_");
    let heard: (payload: string) => void;
    const payload = new Promise<string>((resolve) => (heard = resolve));
    const unlisten = await db.listen!(channel, (value) => heard(value));
    await db.query(`SELECT pg_notify($1, $2)`, [channel, "ping"]);
    expect(await payload).toBe("ping");
    await unlisten();
  });
});
