/**
 * The app on embedded PGlite, the zero-setup default: migrations apply and the basic flow works through HTTP (the
 * typed client, in process).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../src/db/driver.js";
import { migrate } from "../src/db/migrate.js";
import { readMigrations } from "../src/db/migrations-fs.js";
import { createPgliteDatabase } from "../src/db/pglite.js";
import { clientFor } from "./helpers/client.js";
import { randomGroupId, testApp, unique } from "./helpers/context.js";

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
    const client = clientFor(app, unique("did:plc:alice"));
    const groupId = randomGroupId();

    const created = await client.createConvo({ groupId, cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519" });
    expect(created.status).toBe(200);
    const convo = created.data;
    expect(convo).toMatchObject({ groupId, epoch: 0 });

    const listed = await client.getConvos();
    expect(listed.status).toBe(200);
    expect(listed.data.conversations.map((c) => c.id)).toEqual([convo.id]);

    const epoch = await client.getEpoch({ convoId: convo.id });
    expect(epoch.status).toBe(200);
    expect(epoch.data).toEqual({ convoId: convo.id, currentEpoch: 0 });
  });
});
