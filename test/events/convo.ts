/** In-process helpers for the event stream tests: a conversation, messages, and a stream over `app.request`. */
import type { Hono } from "hono";
import { expect } from "vitest";
import { randomGroupId, unique } from "../helpers/context.js";
import { xrpc } from "../helpers/xrpc.js";
import { opened, streamHeaders, streamPath, type OpenStream, type StreamRequest } from "./sseClient.js";

export const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

export const base64 = (text: string) => Buffer.from(text).toString("base64");

/** Alice's new conversation with Bob and Carol. */
export async function conversation(app: Hono) {
  const [alice, bob, carol] = [unique("did:plc:alice"), unique("did:plc:bob"), unique("did:plc:carol")];
  const created = await xrpc(app, alice, "createConvo", {
    body: { groupId: randomGroupId(), cipherSuite: SUITE, initialMembers: [bob, carol] },
  });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  return { alice, bob, carol, convoId: created.body.id as string };
}

export async function send(app: Hono, did: string, convoId: string, text: string) {
  const reply = await xrpc(app, did, "sendMessage", { body: { convoId, ciphertext: base64(text), epoch: 0 } });
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  return reply.body as { messageId: string; seq: number; epoch: number; receivedAt: string };
}

export async function stream(app: Hono, did: string, request: StreamRequest): Promise<OpenStream> {
  return opened(await app.request(streamPath(request), { headers: await streamHeaders(did, request) }));
}
