/**
 * In-process helpers for the event stream tests: a conversation and messages through the typed client, and a raw
 * stream over `app.request` (the stream tests assert its exact events, comments and statuses).
 */
import type { Hono } from "hono";
import { expect } from "vitest";
import { randomGroupId, unique } from "../helpers/context.js";
import { clientFor } from "../helpers/client.js";
import { opened, streamHeaders, streamPath, type OpenStream, type StreamRequest } from "./sseClient.js";

export const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

export const base64 = (text: string) => Buffer.from(text).toString("base64");

/** Alice's new conversation with Bob and Carol. */
export async function conversation(app: Hono) {
  const [alice, bob, carol] = [unique("did:plc:alice"), unique("did:plc:bob"), unique("did:plc:carol")];
  const created = await clientFor(app, alice).createConvo({
    groupId: randomGroupId(),
    cipherSuite: SUITE,
    initialMembers: [bob, carol],
  });
  expect(created.status).toBe(200);
  return { alice, bob, carol, convoId: created.data.id };
}

/** `did` sends `text` (its UTF-8 bytes as the ciphertext); the server's answer. */
export async function send(app: Hono, did: string, convoId: string, text: string) {
  const reply = await clientFor(app, did).sendMessage({
    convoId,
    ciphertext: new TextEncoder().encode(text),
    epoch: 0,
  });
  expect(reply.status).toBe(200);
  return reply.data;
}

export async function stream(app: Hono, did: string, request: StreamRequest): Promise<OpenStream> {
  return opened(await app.request(streamPath(request), { headers: await streamHeaders(did, request) }));
}
