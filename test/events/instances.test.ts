/**
 * Event streams across real server processes on one database: delivery between instances
 * (LISTEN/NOTIFY), reconnects with a cursor, and a restart between two connections.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientOn, conversation, SERVER_SECRET, startServer, type Server } from "./servers.js";
import { openStream, type SseReader, type StreamEvent, type StreamRequest } from "./sseClient.js";

// Polls and keep-alive re-reads are pushed past any test's length: only wake-ups can deliver here.
const WAKE_ONLY = { EVENTS_POLL_MS: "600000", EVENTS_SAFETY_POLL_MS: "600000", EVENTS_KEEPALIVE_MS: "600000" };

interface Sent {
  messageId: string;
  seq: number;
}

let a: Server | undefined;
let b: Server | undefined;

beforeAll(async () => {
  [a, b] = await Promise.all([startServer(WAKE_ONLY), startServer(WAKE_ONLY)]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

/** `count` messages sent all at once, taking turns among `senders`. */
function burst(server: Server, convoId: string, senders: string[], count: number, label: string): Promise<Sent[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const ciphertext = new TextEncoder().encode(`${label}-${i}`);
      const reply = await clientOn(server, senders[i % senders.length]!).sendMessage({ convoId, ciphertext, epoch: 0 });
      expect(reply.status).toBe(200);
      return reply.data;
    }),
  );
}

const idsInSeqOrder = (sent: Sent[]) => [...sent].sort((x, y) => x.seq - y.seq).map((message) => message.messageId);

/** Every event after the first has the next cursor, and they are all messages. */
function expectConsecutiveMessages(events: StreamEvent[]): void {
  expect(events.every((event) => event.event === "message")).toBe(true);
  const first = events[0]!.cursor;
  expect(events.map((event) => event.cursor)).toEqual(events.map((_, i) => first + i));
}

/** Reads to the end of a stream the server ended. */
async function rest(events: SseReader): Promise<StreamEvent[]> {
  return events.take(Number.MAX_SAFE_INTEGER);
}

/** Nothing else is pending on a stream: the next event is a message sent now. */
async function expectNothingMore(events: SseReader, server: Server, convoId: string, sender: string): Promise<void> {
  const [sentinel] = await burst(server, convoId, [sender], 1, "sentinel");
  const next = await events.nextParsed();
  expect(next?.data.id).toBe(sentinel!.messageId);
}

/**
 * Reconnects as `reader` to `url` where `before` left off (the request says how), takes the rest of
 * the `sent` messages and checks the two connections together saw exactly them, in seq order, with
 * nothing more pending (a sentinel from `sender` comes next).
 */
async function expectResumed(
  url: string,
  { reader, sender, request }: { reader: string; sender: string; request: StreamRequest },
  before: StreamEvent[],
  sent: Sent[],
): Promise<void> {
  const second = await openStream(url, reader, request, SERVER_SECRET);
  expect(second.status).toBe(200);
  const after = await second.events!.take(sent.length - before.length);
  await expectNothingMore(second.events!, b!, request.convoId, sender);
  await second.close();

  const union = [...before, ...after];
  expectConsecutiveMessages(union);
  expect(union.map((event) => event.data.id)).toEqual(idsInSeqOrder(sent));
}

describe("event streams across instances", () => {
  it("a stream held on one instance receives, in seq order, all 200 messages sent concurrently through the other", async () => {
    const { alice, bob, convoId } = await conversation(b!);
    const stream = await openStream(a!.url, bob, { convoId }, SERVER_SECRET);
    expect(stream.status).toBe(200);

    const sent = await burst(b!, convoId, [alice, bob], 200, "m");
    const received = await stream.events!.take(200);
    await stream.close();

    expectConsecutiveMessages(received);
    expect(received[0]!.cursor).toBe(3); // after the two `joined` events of createConvo
    expect(received.map((event) => event.data.seq)).toEqual(received.map((_, i) => i + 1));
    expect(received.map((event) => event.data.id)).toEqual(idsInSeqOrder(sent));
  });

  it("a client that disconnects in the middle of a burst and reconnects with its last cursor gets exactly the burst", async () => {
    const { alice, bob, convoId } = await conversation(b!);
    const first = await openStream(a!.url, bob, { convoId }, SERVER_SECRET);
    const sending = burst(b!, convoId, [alice], 100, "d");
    const before = await first.events!.take(30);
    await first.close();
    const sent = await sending;

    // Resumed on the other instance, the way an EventSource does: the last id in Last-Event-ID.
    const request = { convoId, lastEventId: before.at(-1)!.cursor };
    await expectResumed(b!.url, { reader: bob, sender: alice, request }, before, sent);
  });

  it("a server restart between two connections loses nothing", async () => {
    const { alice, bob, convoId } = await conversation(b!);
    const first = await openStream(a!.url, bob, { convoId }, SERVER_SECRET);
    const sentBefore = await burst(b!, convoId, [alice, bob], 50, "r1");
    const taken = await first.events!.take(20);

    // A graceful stop ends the open stream (it may still finish the page it was sending) and exits cleanly.
    expect(await a!.stop(), a!.output()).toBe(0);
    const before = [...taken, ...(await rest(first.events!))];
    const sentWhileDown = await burst(b!, convoId, [alice, bob], 50, "r2");
    a = await startServer(WAKE_ONLY);

    const request = { convoId, cursor: before.at(-1)!.cursor };
    await expectResumed(a.url, { reader: bob, sender: alice, request }, before, [...sentBefore, ...sentWhileDown]);
  });
});
