/**
 * A procedure's failure carries the key it was made with, so the caller can continue the logical call; and every
 * attempt sends the bytes the call began with.
 */
import { describe, expect, it } from "vitest";
import { createClient } from "mls-delivery-service/client";

const text = (value: string) => new TextEncoder().encode(value);

describe("the idempotency key on a failure", () => {
  const failing = async (fetch: (request: Request) => Response | Promise<Response>, deadlineMs = 30_000) => {
    const keys: (string | null)[] = [];
    const client = createClient({
      service: "http://mls.invalid",
      retry: { maxAttempts: 1, deadlineMs },
      fetch: (request) => {
        keys.push(request.headers.get("Idempotency-Key"));
        return fetch(request);
      },
    });
    const error = await client.sendMessage({ convoId: "c1", ciphertext: text("x"), epoch: 0 }).catch((e: unknown) => e);
    expect(keys).toHaveLength(1);
    return { error, key: keys[0] };
  };

  it("an error answer", async () => {
    const { error, key } = await failing(() => Response.json({ error: "ConvoNotFound" }, { status: 404 }));
    expect(error).toMatchObject({ name: "XrpcClientError", status: 404, idempotencyKey: key });
  });

  it("a lost connection", async () => {
    const { error, key } = await failing(() => {
      throw new TypeError("fetch failed");
    });
    expect(error).toMatchObject({ name: "ConnectionLostError", idempotencyKey: key });
  });

  it("the deadline", async () => {
    const hanging = (request: Request) =>
      new Promise<Response>((_, reject) =>
        request.signal.addEventListener("abort", () => reject(request.signal.reason)),
      );
    const { error, key } = await failing(hanging, 200);
    expect(error).toMatchObject({ name: "TimeoutError", idempotencyKey: key });
  });
});

it("every attempt sends the bytes the call began with, whatever the caller does to its buffer", async () => {
  const ciphertext = text("original");
  const bodies: string[] = [];
  const client = createClient({
    service: "http://mls.invalid",
    retry: { baseDelayMs: 1 },
    fetch: async (request) => {
      bodies.push(await request.text());
      if (bodies.length === 1) {
        ciphertext.fill(0x21);
        return Response.json({ error: "NotReady" }, { status: 503 });
      }
      return Response.json({ messageId: "m1", seq: 1 });
    },
  });
  await client.sendMessage({ convoId: "c1", ciphertext, epoch: 0 });
  expect(bodies).toHaveLength(2);
  expect(bodies[1]).toBe(bodies[0]);
});
