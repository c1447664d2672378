/**
 * The event subscription through the client against the real server: it resumes from its last event id across a
 * server killed with SIGKILL and one shut down gracefully, each restarted on its port, and every message arrives
 * once, in order, including those sent while the server was down.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConvoStreamEvent } from "mls-delivery-service/client";
import { start, type BattleServer } from "../battle/server.js";
import { randomGroupId } from "../helpers/context.js";
import { clientFor, countingFetch, newDid, SUITE } from "./fixtures.js";

let server: BattleServer;
beforeAll(async () => void (server = await start()));
afterAll(() => server?.stop());

const text = (value: string) => new TextEncoder().encode(value);

/** Resolves once `check` holds, polling. */
async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("streamConvoEvents", () => {
  it("resumes across a kill -9 and a graceful restart with nothing lost or repeated", async () => {
    const [alice, bob] = [newDid("alice"), newDid("bob")];
    const a = clientFor(server.url, alice, { retry: { deadlineMs: 60_000 } });
    const convoId = (await a.createConvo({ groupId: randomGroupId(), cipherSuite: SUITE, initialMembers: [bob] })).data
      .id;
    const counter = countingFetch();
    const b = clientFor(server.url, bob, { fetch: counter.fetch, retry: { deadlineMs: 60_000 } });

    const stop = new AbortController();
    const events: ConvoStreamEvent[] = [];
    const following = (async () => {
      for await (const event of b.streamConvoEvents({ convoId, cursor: 0 }, stop.signal)) events.push(event);
    })();
    const messages = () => events.flatMap((event) => (event.type === "message" ? [event.data] : []));
    const send = (from: number, to: number) =>
      Promise.all(
        Array.from({ length: to - from + 1 }, (_, i) =>
          a.sendMessage({ convoId, ciphertext: text(`message ${from + i}`), epoch: 0 }),
        ),
      );

    await send(1, 5);
    await until(() => messages().length === 5, "the first five messages");

    await server.kill9();
    const whileDown = send(6, 10);
    server = await start({ PORT: String(server.port) });
    await whileDown;
    await until(() => messages().length >= 10, "the messages sent while the server was down");

    await server.stop();
    const graceful = send(11, 15);
    server = await start({ PORT: String(server.port) });
    await graceful;
    await until(() => messages().length >= 15, "the messages sent across a graceful restart");

    stop.abort();
    await following;
    expect(messages().map((message) => message.seq)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(new TextDecoder().decode(messages()[14]!.ciphertext)).toMatch(/^message \d+$/);
    const ids = events.filter((event) => event.type !== "info").map((event) => event.id);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(new Set(ids).size).toBe(ids.length);
    // It reconnected: more than one stream was opened.
    expect(counter.sent.filter((method) => method === "streamConvoEvents").length).toBeGreaterThanOrEqual(3);
  });

  it("without a cursor, resumes from where the stream began when the connection drops before its first event", async () => {
    const [alice, bob] = [newDid("alice"), newDid("bob")];
    const a = clientFor(server.url, alice, { retry: { deadlineMs: 60_000 } });
    const convoId = (await a.createConvo({ groupId: randomGroupId(), cipherSuite: SUITE, initialMembers: [bob] })).data
      .id;
    await a.sendMessage({ convoId, ciphertext: text("before the stream"), epoch: 0 });
    const counter = countingFetch();
    const b = clientFor(server.url, bob, { fetch: counter.fetch, retry: { deadlineMs: 60_000 } });
    const stop = new AbortController();
    const events: ConvoStreamEvent[] = [];
    const following = (async () => {
      for await (const event of b.streamConvoEvents({ convoId }, stop.signal)) events.push(event);
    })();
    // The stream is open (its request went out and the server answered) before the server goes down.
    await until(() => counter.sent.includes("streamConvoEvents"), "the stream's request");
    await new Promise((resolve) => setTimeout(resolve, 500));
    await server.kill9();
    const whileDown = Promise.all(
      [1, 2, 3].map((i) => a.sendMessage({ convoId, ciphertext: text(`while down ${i}`), epoch: 0 })),
    );
    server = await start({ PORT: String(server.port) });
    await whileDown;
    const messages = () => events.flatMap((event) => (event.type === "message" ? [event.data] : []));
    await until(() => messages().length >= 3, "the messages sent while the server was down");
    stop.abort();
    await following;
    // Not the message sent before the stream opened; every one sent after it, once.
    expect(messages().map((message) => message.seq)).toEqual([2, 3, 4]);
    expect(counter.sent.filter((method) => method === "streamConvoEvents").length).toBeGreaterThanOrEqual(2);
  });

  it("ends with the refusal when the stream cannot be reopened (4xx)", async () => {
    const [alice, mallory] = [newDid("alice"), newDid("mallory")];
    const convoId = (await clientFor(server.url, alice).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE }))
      .data.id;
    const counter = countingFetch();
    const stream = clientFor(server.url, mallory, { fetch: counter.fetch }).streamConvoEvents({ convoId, cursor: 0 });
    await expect(stream.next()).rejects.toMatchObject({ status: 403, error: "NotMember" });
    expect(counter.sent).toEqual(["streamConvoEvents"]);
  });
});
