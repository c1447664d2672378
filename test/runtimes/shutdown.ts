/**
 * Graceful shutdown of a long-lived server process (Node, Deno): on the signal it stops accepting
 * connections, finishes the request in flight, closes its pool and exits 0.
 *
 * The request is made slow for real: the test holds the conversation's row lock, so the server's
 * sendMessage waits in PostgreSQL until the test lets go, after the signal.
 */
import { connect } from "node:net";
import { expect } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { tokenFor, unique } from "../helpers/context.js";
import { conversationLockWaiters, holdConversationRow } from "../helpers/rowLock.js";
import type { RunningServer } from "./server.js";
import { client, createConvo, type SmokeTarget } from "./smoke.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it is true; fails with `what` after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

/** True when a new TCP connection to the port is refused. */
function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

export async function expectGracefulShutdown(
  server: RunningServer,
  target: SmokeTarget,
  db: Database,
  signal: NodeJS.Signals,
): Promise<void> {
  const { api, alice, convoId, lock } = await heldConversation(target, db, "did:plc:shutdown");
  try {
    const inFlight = api.post(alice, "sendMessage", { convoId, ciphertext: "AQID", epoch: 0 });
    await conversationLockWaiters(db, lock.ctid);

    server.signal(signal);
    const port = Number(new URL(target.baseUrl).port);
    await until("the server refuses new connections", () => refusesConnections(port));
    lock.release();

    const reply = await inFlight;
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    expect(reply.body.seq).toBe(1);
    expect(await server.exited).toBe(0);
    expect(server.output()).toContain(`"signal":"${signal}"`);
  } finally {
    lock.release();
    await lock.done;
  }
}

/**
 * A request whose client went away before the signal still runs (here a send waiting for its conversation's row):
 * the server finishes it before it closes its pool, so it is stored and nothing fails halfway.
 */
export async function expectAbandonedRequestFinished(
  server: RunningServer,
  target: SmokeTarget,
  db: Database,
  signal: NodeJS.Signals,
): Promise<void> {
  const { alice, convoId, lock } = await heldConversation(target, db, "did:plc:abandoned");
  try {
    const gone = new AbortController();
    const abandoned = fetch(`${target.baseUrl}/xrpc/blue.catbird.mls.sendMessage`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${await tokenFor(alice, { secret: target.secret })}`,
        "Content-Type": "application/json",
        "Idempotency-Key": unique("abandoned"),
      },
      body: JSON.stringify({ convoId, ciphertext: "AQID", epoch: 0 }),
      signal: gone.signal,
    }).catch(() => "aborted");
    await conversationLockWaiters(db, lock.ctid);
    gone.abort();
    expect(await abandoned).toBe("aborted");

    server.signal(signal);
    const port = Number(new URL(target.baseUrl).port);
    await until("the server refuses new connections", () => refusesConnections(port));
    // Longer than a held send's wait for its row (250 ms): the server tries again meanwhile, on its pool.
    await sleep(600);
    lock.release();

    expect(await server.exited).toBe(0);
    expect(server.output()).not.toContain('"request failed"');
    const [stored] = await db.query<{ count: number }>(
      "SELECT count(*)::int AS count FROM messages WHERE convo_id = $1",
      [convoId],
    );
    expect(stored?.count).toBe(1);
  } finally {
    lock.release();
    await lock.done;
  }
}

/** A new member's conversation, whose row the test holds (FOR UPDATE) until `lock.release()`. */
async function heldConversation(target: SmokeTarget, db: Database, did: string) {
  const api = client(target);
  const alice = unique(did);
  const convoId = await createConvo(api, alice);
  return { api, alice, convoId, lock: await holdConversationRow(db, convoId) };
}
