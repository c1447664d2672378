/**
 * Rule 7's welcome lifecycle with real ts-mls clients on real PostgreSQL: a welcome belongs to one
 * membership (leaving retires it, a new one replaces it), an unfetched welcome expires after
 * WELCOME_TTL_SECONDS, and the grace period holds for every form of the request.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { Credential } from "ts-mls";
import { createGroup, joinGroup, type ClientState } from "ts-mls/clientState.js";
import { createCommit } from "ts-mls/createCommit.js";
import { createApplicationMessage } from "ts-mls/createMessage.js";
import { getCiphersuiteFromName } from "ts-mls/crypto/ciphersuite.js";
import { getCiphersuiteImpl } from "ts-mls/crypto/getCiphersuiteImpl.js";
import { defaultCapabilities } from "ts-mls/defaultCapabilities.js";
import { generateKeyPackage, type KeyPackage, type PrivateKeyPackage } from "ts-mls/keyPackage.js";
import { defaultLifetime } from "ts-mls/lifetime.js";
import { decodeMlsMessage, encodeMlsMessage, type MLSMessage } from "ts-mls/message.js";
import { processPrivateMessage } from "ts-mls/processMessages.js";
import { emptyPskIndex } from "ts-mls/pskIndex.js";
import type { Answer } from "mls-delivery-service/client";
import { sha256Hex } from "../../src/bytes.js";
import { ManualClock } from "../../src/clock.js";
import { fetchWelcome } from "../../src/services/welcomes.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { TEST_CIPHER_SUITE } from "../helpers/mls.js";
import { clientFor, outcome } from "../helpers/client.js";
import { xrpc } from "../helpers/xrpc.js";

const db = testDatabase(10);
afterAll(() => db.close());

const cipherSuite = getCiphersuiteImpl(getCiphersuiteFromName(TEST_CIPHER_SUITE));
const credential = (did: string): Credential => ({ credentialType: "basic", identity: new TextEncoder().encode(did) });
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const decode = (bytes: Uint8Array): MLSMessage => decodeMlsMessage(bytes, 0)![0];
/** A client call's data once it answered 200 (any other answer throws its XrpcClientError). */
const ok = async <T>(call: Promise<Answer<T>>): Promise<T> => {
  const answer = await call;
  expect(answer.status).toBe(200);
  return answer.data;
};

interface OwnKeyPackage {
  publicPackage: KeyPackage;
  privatePackage: PrivateKeyPackage;
}

/** Alice's ts-mls group behind a conversation on the server, with Bob's published key packages. */
async function setup(env: Record<string, string> = {}) {
  const cs = await cipherSuite;
  const clock = new ManualClock();
  const { app } = testApp(db, env, clock);
  const alice = unique("did:plc:lalice");
  const bob = unique("did:plc:lbob");
  const [asAlice, asBob] = [clientFor(app, alice), clientFor(app, bob)];

  // Bob publishes two key packages and keeps their private halves by hash.
  const bobKeys = new Map<string, OwnKeyPackage>();
  for (let i = 0; i < 2; i++) {
    const pkg = await generateKeyPackage(credential(bob), defaultCapabilities(), defaultLifetime, [], cs);
    const bytes = encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: pkg.publicPackage });
    bobKeys.set(await sha256Hex(bytes), pkg);
    const expires = new Date(clock.now().getTime() + 86_400_000).toISOString();
    await ok(asBob.publishKeyPackage({ keyPackage: bytes, cipherSuite: TEST_CIPHER_SUITE, expires }));
  }

  const aliceKeys = await generateKeyPackage(credential(alice), defaultCapabilities(), defaultLifetime, [], cs);
  const groupId = crypto.getRandomValues(new Uint8Array(16));
  let state: ClientState = await createGroup(groupId, aliceKeys.publicPackage, aliceKeys.privatePackage, [], cs);
  const created = await ok(asAlice.createConvo({ groupId: hex(groupId), cipherSuite: TEST_CIPHER_SUITE }));
  const convoId = created.id;

  /**
   * Alice asks the server for one of Bob's key packages and adds Bob with a real commit and Welcome;
   * `replacingLeaf` removes Bob's old leaf in the same commit (a re-invite of a member who failed to join).
   */
  async function addBob(replacingLeaf?: number): Promise<string> {
    const answer = await ok(asAlice.getKeyPackages({ dids: [bob] }));
    const handed = answer.keyPackages[0]!;
    const message = decode(handed.keyPackage);
    if (message.wireformat !== "mls_key_package") throw new Error("expected a key package");
    const epoch = Number(state.groupContext.epoch);
    const { commit, welcome, newState } = await createCommit(
      { state, cipherSuite: cs },
      {
        ratchetTreeExtension: true,
        extraProposals: [
          ...(replacingLeaf === undefined
            ? []
            : [{ proposalType: "remove" as const, remove: { removed: replacingLeaf } }]),
          { proposalType: "add", add: { keyPackage: message.keyPackage } },
        ],
      },
    );
    if (!welcome) throw new Error("ts-mls made no Welcome");
    state = newState;
    await ok(
      asAlice.addMembers({
        convoId,
        didList: [bob],
        epoch,
        commit: encodeMlsMessage(commit),
        welcomeMessage: encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome }),
        keyPackageHashes: [{ did: bob, hash: handed.keyPackageHash }],
      }),
    );
    return handed.keyPackageHash;
  }

  /** Alice removes Bob (leaf 1) with a real commit. */
  async function removeBob() {
    const epoch = Number(state.groupContext.epoch);
    const { commit, newState } = await createCommit(
      { state, cipherSuite: cs },
      { extraProposals: [{ proposalType: "remove", remove: { removed: 1 } }] },
    );
    state = newState;
    await ok(asAlice.leaveConvo({ convoId, targetDid: bob, epoch, commit: encodeMlsMessage(commit) }));
  }

  /** Alice sends an application message in her current epoch. */
  async function aliceSays(text: string) {
    const sent = await createApplicationMessage(state, new TextEncoder().encode(text), cs);
    state = sent.newState;
    const bytes = encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_private_message",
      privateMessage: sent.privateMessage,
    });
    await ok(asAlice.sendMessage({ convoId, ciphertext: bytes, epoch: Number(state.groupContext.epoch) }));
  }

  /** Bob fetches his welcome, fails to join from it and says so (confirmWelcome success: false). */
  async function bobFails(errorDetails: string) {
    await ok(asBob.getWelcome({ convoId }));
    await ok(asBob.confirmWelcome({ convoId, success: false, errorDetails }));
  }

  /** Bob fetches his welcome and joins from it with the key package of `hash`; his new state. */
  async function bobJoins(hash: string): Promise<ClientState> {
    const fetched = await ok(asBob.getWelcome({ convoId }));
    const message = decode(fetched.welcome);
    if (message.wireformat !== "mls_welcome") throw new Error("expected a Welcome");
    const keys = bobKeys.get(hash)!;
    return joinGroup(message.welcome, keys.publicPackage, keys.privatePackage, emptyPskIndex, cs);
  }

  return {
    app,
    clock,
    alice,
    bob,
    asBob,
    convoId,
    bobKeys,
    addBob,
    removeBob,
    aliceSays,
    bobFails,
    bobJoins,
    cs,
    epoch: () => Number(state.groupContext.epoch),
  };
}

const welcomeStates = (convoId: string) =>
  db.query<{ state: string; key_package_hash: string }>(
    `SELECT state, key_package_hash FROM welcome_messages WHERE convo_id = $1 ORDER BY created_at, id`,
    [convoId],
  );

describe("a welcome belongs to one membership", () => {
  it("removed before fetching, re-added with a new Welcome: Bob joins from the new one and decrypts", async () => {
    const t = await setup();
    const firstHash = await t.addBob();
    await t.removeBob();
    // Leaving retired the first welcome: it is no longer live.
    expect((await welcomeStates(t.convoId)).map((row) => row.state)).toEqual(["expired"]);

    const secondHash = await t.addBob();
    expect(secondHash).not.toBe(firstHash);
    expect(await welcomeStates(t.convoId)).toEqual([
      { state: "expired", key_package_hash: firstHash },
      { state: "available", key_package_hash: secondHash },
    ]);
    await t.aliceSays("welcome back, Bob");

    let bobState = await t.bobJoins(secondHash);
    expect(Number(bobState.groupContext.epoch)).toBe(t.epoch());
    await ok(t.asBob.confirmWelcome({ convoId: t.convoId, success: true }));

    const page = await ok(t.asBob.getMessages({ convoId: t.convoId }));
    const texts: string[] = [];
    for (const entry of page.messages) {
      if (entry.messageType !== "app") continue;
      const framed = decode(entry.ciphertext);
      if (framed.wireformat !== "mls_private_message") continue;
      const result = await processPrivateMessage(bobState, framed.privateMessage, emptyPskIndex, t.cs);
      bobState = result.newState;
      if (result.kind === "applicationMessage") texts.push(new TextDecoder().decode(result.message));
    }
    expect(texts).toEqual(["welcome back, Bob"]);
  });

  it("a re-add while the old welcome is in flight replaces it in the same transaction", async () => {
    const t = await setup();
    await t.addBob();
    await t.bobFails("bad tree");
    await t.removeBob();
    const secondHash = await t.addBob();
    expect((await welcomeStates(t.convoId)).map((row) => row.state)).toEqual(["expired", "available"]);
    const bobState = await t.bobJoins(secondHash);
    expect(Number(bobState.groupContext.epoch)).toBe(t.epoch());
  });
});

describe("re-invited after success: false", () => {
  it("the new welcome replaces the live one of an active member, who joins from it", async () => {
    const t = await setup();
    await t.addBob();
    await t.bobFails("lost state");
    const secondHash = await t.addBob(1);
    expect((await welcomeStates(t.convoId)).map((row) => row.state)).toEqual(["expired", "available"]);
    const bobState = await t.bobJoins(secondHash);
    expect(Number(bobState.groupContext.epoch)).toBe(t.epoch());
  });
});

describe("the welcome's time limits hold wherever it is read", () => {
  const GRACE = 300;

  it("a repeated convoId is 400 (getWelcome after the grace period cannot slip past it)", async () => {
    const t = await setup({ WELCOME_GRACE_SECONDS: String(GRACE) });
    await t.addBob();
    await ok(t.asBob.getWelcome({ convoId: t.convoId }));
    t.clock.advance((GRACE + 1) * 1000);
    // Raw: a parameter given twice (malformed; the client sends each once).
    const twice = await xrpc(t.app, t.bob, "getWelcome", { query: { convoId: ["nope", t.convoId] } });
    expect(twice.status).toBe(400);
    expect(twice.body.error).toBe("InvalidRequest");
    expect((await outcome(t.asBob.getWelcome({ convoId: t.convoId }))).status).toBe(410);
  });

  it.each([
    ["getMessages", { convoId: ["a", "b"] }],
    ["getEpoch", { convoId: ["a", "b"] }],
    ["getCommits", { convoId: "a", fromEpoch: ["0", "1"] }],
    ["getConvos", { limit: ["1", "2"] }],
    ["getKeyPackages", { dids: ["did:plc:a", "did:plc:b"], cipherSuite: [TEST_CIPHER_SUITE, TEST_CIPHER_SUITE] }],
    ["getKeyPackageStats", { cipherSuite: [TEST_CIPHER_SUITE, TEST_CIPHER_SUITE] }],
  ])("%s with a single-valued parameter given twice is 400", async (method, query) => {
    const { app } = testApp(db);
    // Raw: malformed queries.
    const answer = await xrpc(app, unique("did:plc:q"), method, { query });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toBe("InvalidRequest");
  });

  it("fetchWelcome itself refuses a welcome past its grace period (no middleware needed)", async () => {
    const t = await setup();
    const hash = await t.addBob();
    const times = (now: Date) => ({ now, graceSeconds: GRACE, ttlSeconds: 86_400 });
    const fetchedAt = new Date();
    await fetchWelcome(db, t.convoId, { did: t.bob, deviceId: "" }, times(fetchedAt));
    const late = new Date(fetchedAt.getTime() + (GRACE + 1) * 1000);
    await expect(fetchWelcome(db, t.convoId, { did: t.bob, deviceId: "" }, times(late))).rejects.toMatchObject({
      status: 410,
    });
    expect(await welcomeStates(t.convoId)).toEqual([{ state: "expired", key_package_hash: hash }]);
  });

  it("a welcome nobody fetched within WELCOME_TTL_SECONDS expires: 410, its key package consumed", async () => {
    const t = await setup({ WELCOME_TTL_SECONDS: "3600" });
    const hash = await t.addBob();
    t.clock.advance(3601 * 1000);
    const gone = await outcome(t.asBob.getWelcome({ convoId: t.convoId }));
    expect(gone.status).toBe(410);
    expect(await welcomeStates(t.convoId)).toEqual([{ state: "expired", key_package_hash: hash }]);
    const [row] = await db.query<{ consumed: boolean }>(
      `SELECT consumed_at IS NOT NULL AS consumed FROM key_packages WHERE owner_did = $1 AND hash = $2`,
      [t.bob, hash],
    );
    expect(row?.consumed).toBe(true);
  });

  it("confirmWelcome after the grace period is 410 too", async () => {
    const t = await setup({ WELCOME_GRACE_SECONDS: String(GRACE) });
    await t.addBob();
    await ok(t.asBob.getWelcome({ convoId: t.convoId }));
    t.clock.advance((GRACE + 1) * 1000);
    const late = await outcome(t.asBob.confirmWelcome({ convoId: t.convoId, success: true }));
    expect(late.status).toBe(410);
    expect((await welcomeStates(t.convoId)).map((row) => row.state)).toEqual(["expired"]);
  });

  it("leaving by oneself (no commit) retires one's live welcome too", async () => {
    const t = await setup();
    await t.addBob();
    await ok(t.asBob.leaveConvo({ convoId: t.convoId }));
    expect((await welcomeStates(t.convoId)).map((row) => row.state)).toEqual(["expired"]);
  });
});
