/**
 * The smoke scenario every runtime passes over real HTTP against real PostgreSQL: a conversation
 * with messages, the idempotency stress, a live event stream, and the welcome two-phase flow. Each runtime's test file
 * starts its server and calls `smokeScenario` inside its own `describe`.
 */
import { expect, it } from "vitest";
import { sha256Hex } from "../../src/bytes.js";
import { randomGroupId, tokenFor, unique } from "../helpers/context.js";
import { makeGroupWithCommit, TEST_CIPHER_SUITE } from "../helpers/mls.js";
import { RosterGroup, SUITE } from "../helpers/rosterGroup.js";

export interface SmokeTarget {
  baseUrl: string;
  /** The HS256 secret the server was started with (DEV_JWT_SECRET). */
  secret: string;
}

export interface Reply {
  status: number;
  // Reply bodies are JSON whose shape each test asserts itself.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  headers: Headers;
}

const XRPC = "/xrpc/blue.catbird.mls.";
const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

/** XRPC over HTTP as `did`: POST with a JSON body when `body` is given, else GET with `params`. */
export function client({ baseUrl, secret }: SmokeTarget) {
  const tokens = new Map<string, Promise<string>>();
  const bearer = (did: string) => {
    if (!tokens.has(did)) tokens.set(did, tokenFor(did, { secret }));
    return tokens.get(did)!;
  };
  const send = async (path: string, init: RequestInit): Promise<Reply> => {
    const response = await fetch(`${baseUrl}${path}`, init);
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: the text itself, for the failure message
    }
    return { status: response.status, body, headers: response.headers };
  };
  return {
    post: async (did: string, method: string, body: unknown, headers: Record<string, string> = {}) =>
      send(`${XRPC}${method}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${await bearer(did)}`, "Content-Type": "application/json", ...headers },
        body: JSON.stringify(body),
      }),
    get: async (did: string, method: string, params: Record<string, string> = {}) =>
      send(`${XRPC}${method}?${new URLSearchParams(params)}`, {
        headers: { Authorization: `Bearer ${await bearer(did)}` },
      }),
  };
}

export type Client = ReturnType<typeof client>;

function expectStatus(reply: Reply, status: number): void {
  expect(reply.status, JSON.stringify(reply.body)).toBe(status);
}

/** Runs `tasks` with at most `limit` in flight at once, keeping their order in the result. */
async function pooled<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      results[index] = await tasks[index]!();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

/** The events of a Server-Sent Events body, one `event: …` block at a time; comments (keep-alives) are skipped. */
async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (block.startsWith("event:")) yield block;
    }
  }
}

/** Creates a conversation as `creator` and returns its id. */
export async function createConvo(api: Client, creator: string, extra: Record<string, unknown> = {}): Promise<string> {
  const created = await api.post(creator, "createConvo", {
    groupId: randomGroupId(),
    cipherSuite: TEST_CIPHER_SUITE,
    ...extra,
  });
  expectStatus(created, 200);
  return created.body.id as string;
}

/** Defines the scenario's tests; `target` is read when they run, after the server has started. */
export function smokeScenario(target: () => SmokeTarget): void {
  it("creates a conversation, sends messages and reads them back in order", async () => {
    const api = client(target());
    const alice = unique("did:plc:smokealice");
    const bob = unique("did:plc:smokebob");
    const convoId = await createConvo(api, alice, { initialMembers: [bob], metadata: { name: "smoke" } });

    const ciphertexts = ["first", "second", "third"].map((text) => base64(new TextEncoder().encode(text)));
    for (const ciphertext of ciphertexts) {
      expectStatus(await api.post(alice, "sendMessage", { convoId, ciphertext, epoch: 0 }), 200);
    }
    const read = await api.get(bob, "getMessages", { convoId });
    expectStatus(read, 200);
    expect(read.body.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2, 3]);
    expect(read.body.messages.map((m: { ciphertext: { $bytes: string } }) => m.ciphertext.$bytes)).toEqual(ciphertexts);
    expect(read.body.messages.every((m: { sender: string }) => m.sender === alice)).toBe(true);

    const listed = await api.get(bob, "getConvos");
    expectStatus(listed, 200);
    expect(listed.body.conversations.map((c: { id: string }) => c.id)).toContain(convoId);
    const stranger = await api.get(unique("did:plc:smokestranger"), "getMessages", { convoId });
    expect(stranger.status).toBe(403);
  });

  it("refuses a method no route knows: the runtime itself (Node 400, workerd 501) or the app (Deno: 501)", async () => {
    const response = await fetch(`${target().baseUrl}/health`, { method: "FROBNICATE" });
    const body = await response.text();
    expect([400, 501], body).toContain(response.status);
    // Where the app saw it, it said so in its own words (and counted nothing).
    if (body.startsWith("{"))
      expect(JSON.parse(body)).toEqual({ error: "NotImplemented", message: "unknown HTTP method" });
  });

  it("100 identical sendMessage requests with one Idempotency-Key store one message; 99 are replays", async () => {
    const api = client(target());
    const alice = unique("did:plc:smokeidem");
    const convoId = await createConvo(api, alice);
    const send = () =>
      api.post(alice, "sendMessage", { convoId, ciphertext: "AQID", epoch: 0 }, { "Idempotency-Key": "smoke-stress" });
    // At most 25 in flight: a Worker opens a connection per request, and a repeat waiting for the
    // first holds its connection, while the local server allows 100 connections for every test file.
    const replies = await pooled(
      Array.from({ length: 100 }, () => send),
      25,
    );
    expect(replies.map((reply) => reply.status)).toEqual(Array(100).fill(200));
    expect(new Set(replies.map((reply) => reply.body.messageId)).size).toBe(1);
    expect(replies.filter((reply) => reply.headers.get("Idempotent-Replayed") === "true")).toHaveLength(99);
    const read = await api.get(alice, "getMessages", { convoId });
    expect(read.body.messages).toHaveLength(1);
  });

  it("an event stream delivers a message sent while it is open", async () => {
    const { baseUrl, secret } = target();
    const api = client(target());
    const alice = unique("did:plc:smokestream");
    const convoId = await createConvo(api, alice);
    const abort = new AbortController();
    const deadline = setTimeout(() => abort.abort(), 30_000);
    try {
      const stream = await fetch(
        `${baseUrl}${XRPC}streamConvoEvents?${new URLSearchParams({ convoId, cursor: "0" })}`,
        {
          headers: { Authorization: `Bearer ${await tokenFor(alice, { secret })}` },
          signal: abort.signal,
        },
      );
      expect(stream.status).toBe(200);
      const events = readEvents(stream.body!);
      expect((await events.next()).value).toMatch(/^event: membership/);
      expectStatus(await api.post(alice, "sendMessage", { convoId, ciphertext: "c3RyZWFt", epoch: 0 }), 200);
      const next = (await events.next()).value as string;
      expect(next).toMatch(/^event: message/);
      expect(next).toContain('"ciphertext":{"$bytes":"c3RyZWFt"}');
    } finally {
      clearTimeout(deadline);
      abort.abort();
    }
  });

  it("welcome flow: the new member fetches, re-fetches the same welcome, confirms, then gets 410", async () => {
    const api = client(target());
    const alice = unique("did:plc:smokewalice");
    const bob = unique("did:plc:smokewbob");
    const group = await makeGroupWithCommit({ creatorDid: alice, memberDid: bob });
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const keyPackage = base64(group.keyPackageBytes);
    expectStatus(
      await api.post(bob, "publishKeyPackage", { keyPackage, cipherSuite: TEST_CIPHER_SUITE, expires }),
      200,
    );
    const convoId = await createConvo(api, alice, {
      groupId: group.groupIdHex,
      initialMembers: [bob],
      welcomeMessage: base64(group.welcomeBytes),
      keyPackageHashes: [{ did: bob, hash: await sha256Hex(group.keyPackageBytes) }],
    });

    const first = await api.get(bob, "getWelcome", { convoId });
    expectStatus(first, 200);
    expect(first.body).toEqual({ convoId, welcome: { $bytes: base64(group.welcomeBytes) } });
    const again = await api.get(bob, "getWelcome", { convoId });
    expect(again.body).toEqual(first.body);
    const confirmed = await api.post(bob, "confirmWelcome", { convoId, success: true });
    expectStatus(confirmed, 200);
    expect(confirmed.body).toEqual({ confirmed: true });
    const gone = await api.get(bob, "getWelcome", { convoId });
    expectStatus(gone, 410);
    expect(gone.body.error).toBe("WelcomeGone");
  });
  it("devices: a roster-checked conversation takes a commit bundle (GroupInfo and PublicMessage signatures verified here)", async () => {
    const api = client(target());
    const alice = { did: unique("did:plc:smokedalice"), deviceId: "phone" };
    const bob = { did: unique("did:plc:smokedbob"), deviceId: "phone" };
    for (const device of [alice, bob]) {
      expectStatus(await api.post(device.did, "registerDevice", { deviceId: device.deviceId }), 200);
    }
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const group = await RosterGroup.create(alice, {
      publish: async (device, keyPackage) =>
        expectStatus(
          await api.post(device.did, "publishKeyPackage", {
            keyPackage: base64(keyPackage),
            cipherSuite: SUITE,
            expires,
          }),
          200,
        ),
    });
    const created = await api.post(alice.did, "createConvo", {
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      deviceId: alice.deviceId,
      groupInfo: base64(await group.groupInfo(alice)),
    });
    expectStatus(created, 200);
    const convoId = created.body.id as string;

    const bundle = await group.commit(alice, { add: [bob], publicMessage: true });
    const committed = await api.post(alice.did, "processCommit", {
      convoId,
      deviceId: alice.deviceId,
      epoch: bundle.epoch,
      commit: base64(bundle.commit),
      groupInfo: base64(bundle.groupInfo),
      welcomeMessage: base64(bundle.welcome!),
      keyPackageHashes: bundle.keyPackageHashes,
    });
    expectStatus(committed, 200);
    expect(committed.body).toMatchObject({ newEpoch: 1, added: [{ did: bob.did, deviceId: "phone" }], removed: [] });
    await bundle.apply();

    const welcome = await api.get(bob.did, "getWelcome", { convoId, deviceId: bob.deviceId });
    expectStatus(welcome, 200);
    expect(welcome.body.welcome).toEqual({ $bytes: base64(bundle.welcome!) });
    const info = await api.get(bob.did, "getGroupInfo", { convoId });
    expectStatus(info, 200);
    expect(info.body).toEqual({ convoId, epoch: 1, groupInfo: { $bytes: base64(bundle.groupInfo) } });
    const sent = await api.post(bob.did, "sendMessage", {
      convoId,
      deviceId: bob.deviceId,
      epoch: 1,
      ciphertext: base64(await group.application(bob, "hello from bob's phone")),
    });
    expectStatus(sent, 200);
  });
}
