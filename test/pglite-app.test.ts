/** The app on embedded PGlite, the zero-setup default: migrations apply and the basic flow works through HTTP. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../src/db/driver.js";
import { migrate } from "../src/db/migrate.js";
import { readMigrations } from "../src/db/migrations-fs.js";
import { createPgliteDatabase } from "../src/db/pglite.js";
import { randomGroupId, testApp, tokenFor, unique } from "./helpers/context.js";

let db: Database;

// PGlite compiles its WASM at start: 2–4 s on an idle machine, tens of seconds on a loaded 2-core one.
beforeAll(async () => {
  db = await createPgliteDatabase();
  await migrate(db, await readMigrations());
}, 180_000);
afterAll(() => db.close());

describe("app on in-memory PGlite", () => {
  it("creates a conversation, lists it and reports epoch 0", async () => {
    const { app } = testApp(db);
    const alice = unique("did:plc:alice");
    const auth = { Authorization: `Bearer ${await tokenFor(alice)}` };
    const groupId = randomGroupId();

    const created = await app.request("/xrpc/blue.catbird.mls.createConvo", {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/json" },
      body: JSON.stringify({ groupId, cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519" }),
    });
    expect(created.status).toBe(200);
    const convo = (await created.json()) as { id: string; groupId: string; epoch: number };
    expect(convo).toMatchObject({ groupId, epoch: 0 });

    const listed = await app.request("/xrpc/blue.catbird.mls.getConvos", { headers: auth });
    expect(listed.status).toBe(200);
    const { conversations } = (await listed.json()) as { conversations: { id: string }[] };
    expect(conversations.map((c) => c.id)).toEqual([convo.id]);

    const epoch = await app.request(`/xrpc/blue.catbird.mls.getEpoch?convoId=${encodeURIComponent(convo.id)}`, {
      headers: auth,
    });
    expect(epoch.status).toBe(200);
    expect(await epoch.json()).toEqual({ convoId: convo.id, currentEpoch: 0 });
  });
});
