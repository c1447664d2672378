/**
 * Exactly-once by default: a procedure keeps its idempotency key across every retry. Against the real server
 * process, killed with SIGKILL and restarted on its port while calls are in flight, nothing is stored twice (the
 * rows say so); 4xx answers are never retried. The policy itself (503 NotReady, 409 IdempotencyKeyInUse, 429 with
 * Retry-After, the deadline) is checked with scripted answers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, XrpcClientError } from "mls-delivery-service/client";
import { start, type BattleServer } from "../battle/server.js";
import { randomGroupId, testDatabase } from "../helpers/context.js";
import { clientFor, countingFetch, newDid, SUITE } from "./fixtures.js";

const db = testDatabase(2);
let server: BattleServer;
beforeAll(async () => void (server = await start()));
afterAll(async () => {
  await server?.stop();
  await db.close();
});

const text = (value: string) => new TextEncoder().encode(value);
const restart = async () => {
  await server.kill9();
  server = await start({ PORT: String(server.port) });
};

async function plainConvo(did: string): Promise<string> {
  return (await clientFor(server.url, did).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE })).data.id;
}

async function storedMessages(convoId: string) {
  return db.query<{ seq: number; idempotency_key: string; id: string }>(
    `SELECT seq::int, idempotency_key, id FROM messages WHERE convo_id = $1 ORDER BY seq`,
    [convoId],
  );
}

describe("retries against a killed and restarted server", () => {
  it("a send whose answer was lost to a kill -9 is retried with its key and answered as a replay", async () => {
    const alice = newDid("alice");
    const convoId = await plainConvo(alice);
    let lost = false;
    const client = clientFor(server.url, alice, {
      retry: { deadlineMs: 60_000 },
      // The first answer arrives (the send committed), then the server dies before the client sees it.
      fetch: async (request) => {
        const response = await fetch(request);
        if (lost) return response;
        lost = true;
        await restart();
        throw new TypeError("fetch failed");
      },
    });
    const answer = await client.sendMessage({ convoId, ciphertext: text("once"), epoch: 0 });
    expect(answer.replayed).toBe(true);
    expect(answer.data.seq).toBe(1);
    const rows = await storedMessages(convoId);
    expect(rows).toEqual([{ seq: 1, idempotency_key: answer.idempotencyKey, id: answer.data.messageId }]);
  });

  it("sends in flight when the server is killed all land exactly once", async () => {
    const alice = newDid("alice");
    const convoId = await plainConvo(alice);
    let answered = 0;
    let failed = 0;
    const client = clientFor(server.url, alice, {
      retry: { deadlineMs: 60_000 },
      fetch: async (request) => {
        const response = await fetch(request).catch((error: unknown) => {
          failed++;
          throw error;
        });
        answered++;
        return response;
      },
    });
    // Eight senders, each one send after another: sends are in flight whenever the kill comes.
    const [senders, each] = [8, 20];
    const count = senders * each;
    const sends = Array.from({ length: senders }, async (_, sender) => {
      const answers = [];
      for (let i = 0; i < each; i++) {
        answers.push(await client.sendMessage({ convoId, ciphertext: text(`message ${sender}.${i}`), epoch: 0 }));
      }
      return answers;
    });
    while (answered < 30) await new Promise((resolve) => setTimeout(resolve, 2));
    await restart();
    const answers = (await Promise.all(sends)).flat();
    expect(failed).toBeGreaterThan(0);

    const rows = await storedMessages(convoId);
    expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
    expect(new Set(rows.map((row) => row.idempotency_key))).toEqual(
      new Set(answers.map((answer) => answer.idempotencyKey)),
    );
    expect(new Set(rows.map((row) => row.id))).toEqual(new Set(answers.map((answer) => answer.data.messageId)));
  });

  it("a conversation created across a kill -9 exists once", async () => {
    const alice = newDid("alice");
    const groupId = randomGroupId();
    const client = clientFor(server.url, alice, { retry: { deadlineMs: 60_000 } });
    const restarting = server.kill9().then(async () => (server = await start({ PORT: String(server.port) })));
    const answer = await client.createConvo({ groupId, cipherSuite: SUITE });
    await restarting;
    expect(answer.data.groupId).toBe(groupId);
    const rows = await db.query(`SELECT id FROM conversations WHERE group_id = $1`, [groupId]);
    expect(rows).toEqual([{ id: answer.data.id }]);
  });
});

describe("what is never retried", () => {
  it("answers 4xx once: not found, not a member, bad input, a key reused with another body", async () => {
    const [alice, mallory] = [newDid("alice"), newDid("mallory")];
    const convoId = await plainConvo(alice);
    const counter = countingFetch();
    const client = clientFor(server.url, mallory, { fetch: counter.fetch });
    const failure = (call: Promise<unknown>) =>
      call.then(
        () => expect.unreachable("the call succeeded"),
        (error: unknown) => {
          expect(error).toBeInstanceOf(XrpcClientError);
          return error as XrpcClientError;
        },
      );

    const missing = await failure(client.sendMessage({ convoId: "no-such-convo", ciphertext: text("x"), epoch: 0 }));
    expect([missing.status, missing.error, missing.retryAfter]).toEqual([404, "ConvoNotFound", undefined]);
    expect(missing.message).not.toBe("");
    expect((await failure(client.getEpoch({ convoId }))).error).toBe("NotMember");
    expect((await failure(client.getMessages({ convoId, limit: 500 }))).status).toBe(400);

    const own = clientFor(server.url, alice, { fetch: counter.fetch });
    const first = await own.sendMessage({ convoId, ciphertext: text("a"), epoch: 0 }, { idempotencyKey: "key-1" });
    const again = await own.sendMessage({ convoId, ciphertext: text("a"), epoch: 0 }, { idempotencyKey: "key-1" });
    expect([first.replayed, again.replayed, again.data]).toEqual([false, true, first.data]);
    const reused = await failure(
      own.sendMessage({ convoId, ciphertext: text("b"), epoch: 0 }, { idempotencyKey: "key-1" }),
    );
    expect([reused.status, reused.error]).toEqual([422, "IdempotencyKeyReused"]);

    expect(counter.sent).toEqual([
      "sendMessage",
      "getEpoch",
      "getMessages",
      "sendMessage",
      "sendMessage",
      "sendMessage",
    ]);
    expect((await storedMessages(convoId)).length).toBe(1);
  });
});

describe("the retry policy", () => {
  /** A fetch answering `answers` in turn (a function throws, as a lost connection), recording each request. */
  function scripted(answers: (() => Response)[]) {
    const requests: { key: string | null; at: number }[] = [];
    return {
      requests,
      fetch: async (request: Request) => {
        requests.push({ key: request.headers.get("Idempotency-Key"), at: Date.now() });
        const next = answers.shift();
        if (!next) throw new Error("no answer scripted");
        return next();
      },
    };
  }
  const error =
    (status: number, name: string, headers: Record<string, string> = {}) =>
    () =>
      Response.json({ error: name, message: name }, { status, headers });
  const lost = () => {
    throw new TypeError("fetch failed");
  };
  const ok = () =>
    Response.json({ success: true, newEpoch: 3 }, { headers: { "Idempotent-Replayed": "true", "X-Request-Id": "r1" } });

  it("retries NotReady, IdempotencyKeyInUse, 429, 5xx and lost connections with one key, honouring Retry-After", async () => {
    const script = scripted([
      error(503, "NotReady", { "Retry-After": "1" }),
      error(409, "IdempotencyKeyInUse", { "Retry-After": "1" }),
      error(429, "RateLimitExceeded"),
      error(500, "InternalServerError"),
      lost,
      ok,
    ]);
    const client = clientFor("http://mls.invalid", newDid("alice"), {
      fetch: script.fetch,
      retry: { baseDelayMs: 10 },
    });
    const answer = await client.leaveConvo({ convoId: "c1" });
    expect(answer).toMatchObject({ data: { success: true, newEpoch: 3 }, replayed: true, requestId: "r1" });
    expect(script.requests).toHaveLength(6);
    expect(new Set(script.requests.map((request) => request.key))).toEqual(new Set([answer.idempotencyKey]));
    const [first, second, third] = script.requests;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
    expect(third!.at - second!.at).toBeGreaterThanOrEqual(990);
  });

  it("gives up at the deadline with the last failure", async () => {
    const script = scripted(Array.from({ length: 100 }, () => error(503, "NotReady", { "Retry-After": "0" })));
    const client = clientFor("http://mls.invalid", newDid("alice"), {
      fetch: script.fetch,
      retry: { baseDelayMs: 50 },
    });
    const began = Date.now();
    const failure = await client.getEpoch({ convoId: "c1" }, { deadlineMs: 400 }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ status: 503, error: "NotReady", retryAfter: 0 });
    expect(Date.now() - began).toBeLessThan(1_000);
    expect(script.requests.length).toBeGreaterThan(1);
    // Queries carry no key.
    expect(script.requests[0]!.key).toBeNull();
  });

  it("cuts an attempt that outlives the deadline, and ends at once when the caller aborts", async () => {
    const hanging = (request: Request) =>
      new Promise<Response>((_, reject) =>
        request.signal.addEventListener("abort", () => reject(request.signal.reason)),
      );
    const client = clientFor("http://mls.invalid", newDid("alice"), { fetch: hanging });
    await expect(client.getConvos({}, { deadlineMs: 200 })).rejects.toMatchObject({ name: "TimeoutError" });
    const stop = new AbortController();
    const call = client.sendMessage({ convoId: "c1", ciphertext: text("x"), epoch: 0 }, { signal: stop.signal });
    stop.abort(new Error("the user left"));
    await expect(call).rejects.toThrow("the user left");
  });

  it("does not retry a token supplier that failed", async () => {
    const script = scripted([ok]);
    const client = createClient({
      service: "http://mls.invalid",
      fetch: script.fetch,
      token: () => Promise.reject(new Error("no session")),
    });
    await expect(client.leaveConvo({ convoId: "c1" })).rejects.toThrow("no session");
    expect(script.requests).toHaveLength(0);
  });

  it("makes at most maxAttempts attempts (1: none retried)", async () => {
    for (const maxAttempts of [1, 3]) {
      const script = scripted(Array.from({ length: 5 }, () => error(503, "NotReady", { "Retry-After": "0" })));
      const client = clientFor("http://mls.invalid", newDid("alice"), {
        fetch: script.fetch,
        retry: { baseDelayMs: 1, maxAttempts },
      });
      await expect(client.leaveConvo({ convoId: "c1" })).rejects.toMatchObject({ status: 503, error: "NotReady" });
      expect(script.requests).toHaveLength(maxAttempts);
    }
  });

  it("never retries 422 and other 4xx", async () => {
    for (const [status, name] of [
      [422, "IdempotencyKeyReused"],
      [409, "EpochMismatch"],
      [401, "ExpiredToken"],
      [410, "WelcomeGone"],
    ] as const) {
      const script = scripted([error(status, name), ok]);
      const client = clientFor("http://mls.invalid", newDid("alice"), { fetch: script.fetch });
      await expect(client.leaveConvo({ convoId: "c1" })).rejects.toMatchObject({ status, error: name });
      expect(script.requests).toHaveLength(1);
    }
  });
});
