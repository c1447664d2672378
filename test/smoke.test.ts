import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, tokenFor, unique, randomGroupId } from "./helpers/context.js";

const db = testDatabase();
afterAll(() => db.close());

describe("smoke on real Postgres", () => {
  it("creates a conversation and lists it", async () => {
    const { app } = testApp(db);
    const alice = unique("did:plc:alice");
    const token = await tokenFor(alice);
    const created = await app.request("/xrpc/blue.catbird.mls.createConvo", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ groupId: randomGroupId(), cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519" }),
    });
    expect(created.status).toBe(200);
    const convo = (await created.json()) as { id: string };
    const listed = await app.request("/xrpc/blue.catbird.mls.getConvos", { headers: { Authorization: `Bearer ${token}` } });
    expect(((await listed.json()) as { conversations: { id: string }[] }).conversations.map((c) => c.id)).toEqual([convo.id]);
  });
});
