import type { Hono } from "hono";
import { expect } from "vitest";
import { randomGroupId, unique } from "../helpers/context.js";
import { clientFor, outcome } from "../helpers/client.js";
import { TEST_CIPHER_SUITE as SUITE } from "../helpers/mls.js";

/** `did` sends `ciphertext` to `convoId` through `app` under the idempotency key `key`: the outcome. */
export const keyedSend = (
  app: Hono,
  did: string,
  convoId: string,
  key: string,
  ciphertext = new Uint8Array([1, 2, 3]),
) => outcome(clientFor(app, did).sendMessage({ convoId, ciphertext, epoch: 0 }, { idempotencyKey: key }));

/** A new conversation whose only member is a new DID starting with `prefix`, created through `app`. */
export async function soloConversation(app: Hono, prefix: string) {
  const alice = unique(prefix);
  const created = await clientFor(app, alice).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
  expect(created.status).toBe(200);
  return { alice, convoId: created.data.id };
}
