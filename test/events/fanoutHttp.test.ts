/**
 * Fan-out over real HTTP (the app served by @hono/node-server, as the Node entry does) on real PostgreSQL:
 * 120 streams of one conversation each get every event once, in order and byte for byte alike, across the
 * replay-to-live seam and a member's removal in the middle of a burst; the events this instance's send
 * batches wrote reach its streams without a read, and a wake-up from elsewhere costs one shared read.
 */
import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { SHARED_EVENTS_SQL } from "../../src/services/sharedEvents.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { clientFor } from "../helpers/client.js";
import { send, SUITE } from "./convo.js";
import { openStream, type OpenStream, type SseEvent, type StreamRequest } from "./sseClient.js";

const db = testDatabase();
afterAll(() => db.close());

const MEMBERS = 100;
const STREAMS = 120;
// Only the wake-ups under test deliver: no polls, no keep-alives. Small pages, so a burst spans several.
const ENV = {
  EVENTS_POLL_MS: "600000",
  EVENTS_SAFETY_POLL_MS: "600000",
  EVENTS_KEEPALIVE_MS: "600000",
  MAX_PAGE_BYTES: "2048",
};

/** The app over a database that counts the shared reads of stream feeds, served over HTTP. */
async function fanoutServer() {
  const counted = { sharedReads: 0 };
  const hooked = withStatementHook(db, async (sql) => {
    if (sql === SHARED_EVENTS_SQL) counted.sharedReads++;
  });
  const { app } = testApp(hooked, ENV);
  const server = await listen(app);
  return { app, url: server.url, close: server.close, counted };
}

async function listen(app: Hono): Promise<{ url: string; close(): Promise<void> }> {
  const server = await new Promise<Server>((resolve) => {
    const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(started as Server));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** Alice's conversation with MEMBERS members; its head (the last event seq) once created. */
async function bigConversation(app: Hono) {
  const alice = unique("did:plc:alice");
  const members = Array.from({ length: MEMBERS }, (_, i) => unique(`did:plc:m${i}-`));
  const created = await clientFor(app, alice).createConvo({
    groupId: randomGroupId(),
    cipherSuite: SUITE,
    initialMembers: members,
  });
  expect(created.status).toBe(200);
  // One `joined` event each for Alice and the members.
  return { alice, members, convoId: created.data.id, head: MEMBERS + 1 };
}

interface Follower {
  did: string;
  request: StreamRequest;
  stream: OpenStream;
  /** Every event received, as sent. */
  events: SseEvent[];
}

async function follow(url: string, did: string, request: StreamRequest): Promise<Follower> {
  const stream = await openStream(url, did, request);
  expect(stream.status).toBe(200);
  return { did, request, stream, events: [] };
}

/** Reads `follower`'s stream until its event `seq` (or the stream's end). */
async function readUntil(follower: Follower, seq: number): Promise<void> {
  while (Number(follower.events.at(-1)?.id ?? 0) < seq) {
    const event = await follower.stream.events!.next();
    if (!event) return;
    follower.events.push(event);
  }
}

/** `count` messages from `sender`, `concurrent` at a time (sends in flight together share a batch). */
async function sendMany(app: Hono, sender: string, convoId: string, count: number, concurrent: number) {
  const sent: { seq: number }[] = [];
  for (let i = 0; i < count; i += concurrent) {
    const group = Array.from({ length: Math.min(concurrent, count - i) }, (_, j) =>
      send(app, sender, convoId, `message ${i + j} ${"x".repeat(200)}`),
    );
    sent.push(...(await Promise.all(group)));
  }
  return sent;
}

describe("fan-out to many streams over HTTP", () => {
  it("own sends reach 120 streams with no read once the feed has read; a wake-up from elsewhere costs one shared read", async () => {
    const { app, url, close, counted } = await fanoutServer();
    try {
      const { alice, members, convoId, head } = await bigConversation(app);
      const followers = await Promise.all(
        Array.from({ length: STREAMS }, (_, i) => follow(url, members[i % MEMBERS]!, { convoId })),
      );
      // The first message wakes the feed from outside its knowledge: it reads once (more if streams were
      // still replaying), and from then on knows every event up to the head.
      const [first] = await sendMany(app, alice, convoId, 1, 1);
      await Promise.all(followers.map((follower) => readUntil(follower, head + 1)));
      expect(first!.seq).toBe(1);

      const before = counted.sharedReads;
      await sendMany(app, alice, convoId, 30, 6);
      await Promise.all(followers.map((follower) => readUntil(follower, head + 31)));
      expect(counted.sharedReads - before).toBe(0);

      // A membership change is written elsewhere (not a send batch): one wake-up, one read for every stream.
      const removed = members[MEMBERS - 1]!;
      expect((await clientFor(app, alice).leaveConvo({ convoId, targetDid: removed })).status).toBe(200);
      await Promise.all(followers.map((follower) => readUntil(follower, head + 32)));
      expect(counted.sharedReads - before).toBe(1);

      await sendMany(app, alice, convoId, 10, 5);
      const staying = followers.filter((follower) => follower.did !== removed);
      await Promise.all(staying.map((follower) => readUntil(follower, head + 42)));
      expect(counted.sharedReads - before).toBe(1);

      for (const follower of staying) {
        expect(follower.events.map((event) => Number(event.id))).toEqual(range(head + 1, head + 42));
      }
      for (const follower of followers.filter((f) => f.did === removed)) {
        await readUntil(follower, Number.MAX_SAFE_INTEGER);
        expect(follower.events.map((event) => Number(event.id))).toEqual(range(head + 1, head + 32));
        expect(JSON.parse(follower.events.at(-1)!.data)).toMatchObject({ type: "removed", did: removed });
      }
      await Promise.all(followers.map((follower) => follower.stream.close()));
    } finally {
      await close();
    }
  });

  it("every stream gets every event exactly once and in order, the same bytes whether read or handed over, across replays that catch up and a removal mid-burst", async () => {
    const { app, url, close } = await fanoutServer();
    try {
      const { alice, members, convoId, head } = await bigConversation(app);
      const live = await Promise.all(members.map((did) => follow(url, did, { convoId })));
      const removed = members[MEMBERS / 2]!;

      const burst = sendMany(app, alice, convoId, 40, 4);
      // Meanwhile: 20 streams replay from the start (pages of the database) into the live burst, and a
      // member is removed between two sends.
      const replaying = Promise.all(
        members.slice(0, STREAMS - MEMBERS).map((did) => follow(url, did, { convoId, cursor: 0 })),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect((await clientFor(app, alice).leaveConvo({ convoId, targetDid: removed })).status).toBe(200);
      await burst;
      const [sentinel] = await sendMany(app, alice, convoId, 1, 1);
      const last = head + 40 + 1 + 1;
      const followers = [...live, ...(await replaying)];
      await Promise.all(followers.map((follower) => readUntil(follower, last)));
      expect(sentinel!.seq).toBe(41);

      const removal = followers.flatMap((f) => f.events).find((event) => event.event === "membership");
      const removedAt = Number(removal!.id);
      const bytes = new Map<string, string>();
      for (const follower of followers) {
        const ids = follower.events.map((event) => Number(event.id));
        // A replay starts at the member's joining, before the live head; a live stream right after that head.
        const from = follower.request.cursor === 0 ? ids[0]! : head + 1;
        expect(from).toBeLessThanOrEqual(head + 1);
        const to = follower.did === removed ? removedAt : last;
        expect(ids, follower.did).toEqual(range(from, to));
        for (const event of follower.events) {
          const seen = bytes.get(event.id!) ?? bytes.set(event.id!, `${event.event}\n${event.data}`).get(event.id!);
          expect(`${event.event}\n${event.data}`).toBe(seen);
        }
      }
      // The removed member's streams end with their removal: nothing after it.
      for (const follower of followers.filter((f) => f.did === removed)) {
        expect(await follower.stream.events!.next()).toBeUndefined();
      }
      // What the live streams got handed over is what a replay reads from the database, byte for byte.
      const replay = await follow(url, members[1]!, { convoId, cursor: head });
      await readUntil(replay, last);
      expect(replay.events.map((event) => `${event.event}\n${event.data}`)).toEqual(
        range(head + 1, last).map((seq) => bytes.get(String(seq))),
      );
      await Promise.all([...followers, replay].map((follower) => follower.stream.close()));
    } finally {
      await close();
    }
  });
});

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
