import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique, randomGroupId } from "./helpers/context.js";
import { clientFor } from "./helpers/client.js";

const db = testDatabase();
afterAll(() => db.close());

describe("smoke on real Postgres", () => {
  it("creates a conversation and lists it", async () => {
    const { app } = testApp(db);
    const client = clientFor(app, unique("did:plc:alice"));
    const created = await client.createConvo({
      groupId: randomGroupId(),
      cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
    });
    expect(created.status).toBe(200);
    const listed = await client.getConvos();
    expect(listed.data.conversations.map((c) => c.id)).toEqual([created.data.id]);
  });
});
