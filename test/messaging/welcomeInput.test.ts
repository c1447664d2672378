/**
 * `welcomeMessage` (createConvo, addMembers) must be exactly one MLSMessage with wire format mls_welcome, made for the
 * conversation's cipher suite: anything else is 400 InvalidRequest and stores no welcome row.
 */
import { decodeMlsMessage, encodeMlsMessage } from "ts-mls/message.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage } from "../helpers/mls.js";
import { Api, expectRefusal, ok } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

/** The same Welcome relabelled with another cipher suite (its secrets no longer open; the framing reads). */
function withSuite(welcomeBytes: Uint8Array, cipherSuite: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256"): Uint8Array {
  const message = decodeMlsMessage(welcomeBytes, 0)?.[0];
  if (message?.wireformat !== "mls_welcome") throw new Error("expected a Welcome");
  return encodeMlsMessage({ ...message, welcome: { ...message.welcome, cipherSuite } });
}

let welcome: Uint8Array;
const bad: Record<string, Uint8Array> = {};
beforeAll(async () => {
  const group = await makeGroupWithCommit();
  welcome = group.welcomeBytes;
  bad["opaque bytes"] = new Uint8Array([1, 2, 3]);
  bad["a commit"] = group.commitBytes;
  bad["a KeyPackage"] = await makeKeyPackage();
  bad["a GroupInfo"] = group.groupInfoBytes;
  bad["a Welcome with a trailing byte"] = new Uint8Array([...welcome, 0]);
  bad["a Welcome of another cipher suite"] = withSuite(welcome, "MLS_128_DHKEMP256_AES128GCM_SHA256_P256");
});

const welcomeRows = async (convoId: string) =>
  Number(
    (await db.query<{ n: number }>(`SELECT count(*) AS n FROM welcome_messages WHERE convo_id = $1`, [convoId]))[0]!.n,
  );

describe("welcomeMessage must be a Welcome for the conversation's cipher suite", () => {
  const cases = [
    "opaque bytes",
    "a commit",
    "a KeyPackage",
    "a GroupInfo",
    "a Welcome with a trailing byte",
    "a Welcome of another cipher suite",
  ];

  it.each(cases)("createConvo refuses %s with 400 InvalidRequest", async (name) => {
    const alice = unique("did:plc:alice");
    const reply = api.as(alice).createConvo({
      groupId: randomGroupId(),
      cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
      initialMembers: [unique("did:plc:bob")],
      welcomeMessage: bad[name]!,
    });
    const refusal = await expectRefusal(reply, 400, "InvalidRequest");
    expect(refusal.message).toMatch(/welcomeMessage/);
    const [row] = await db.query<{ n: number }>(`SELECT count(*) AS n FROM conversations WHERE creator_did = $1`, [
      alice,
    ]);
    expect(Number(row!.n)).toBe(0);
  });

  it.each(cases)("addMembers refuses %s with 400 InvalidRequest", async (name) => {
    const alice = unique("did:plc:alice");
    const convoId = await api.createConvo(alice);
    const reply = api.as(alice).addMembers({ convoId, didList: [unique("did:plc:bob")], welcomeMessage: bad[name]! });
    const refusal = await expectRefusal(reply, 400, "InvalidRequest");
    expect(refusal.message).toMatch(/welcomeMessage/);
    expect(await welcomeRows(convoId)).toBe(0);
  });

  it("accepts a real Welcome in both, and the recipient fetches those bytes", async () => {
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const carol = unique("did:plc:carol");
    const convoId = await api.createConvo(alice, [bob], { welcomeMessage: welcome });
    await ok(api.as(alice).addMembers({ convoId, didList: [carol], welcomeMessage: welcome }));
    for (const who of [bob, carol]) {
      const reply = await ok(api.as(who).getWelcome({ convoId }));
      expect(Buffer.from(reply.data.welcome)).toEqual(Buffer.from(welcome));
    }
  });
});
