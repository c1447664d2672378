/**
 * Issue 13, item 14: a request that times out answers "503, retry" only when nothing it started can
 * still commit. The database is connected the way the server does it (config → connectDatabase), so
 * its statements carry limits below REQUEST_TIMEOUT_MS.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { connectDatabase } from "../../src/db/connect.js";
import type { Database } from "../../src/db/driver.js";
import { randomGroupId, testApp, TEST_SECRET, unique } from "../helpers/context.js";
import { clientFor, outcome } from "../helpers/client.js";
import { xrpc } from "../helpers/xrpc.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("request timeout while the conversation row is locked", () => {
  const applicationName = unique("reqtimeout_");
  const env = { REQUEST_TIMEOUT_MS: "2000", DEV_JWT_SECRET: TEST_SECRET };
  let db: Database;
  const admin = postgres(inject("databaseUrl"), { max: 2, onnotice: () => {} });
  beforeAll(async () => {
    const url = new URL(inject("databaseUrl"));
    url.searchParams.set("application_name", applicationName);
    db = await connectDatabase(loadConfig({ ...env, DATABASE_URL: url.toString(), DATABASE_POOL_MAX: "4" }));
  });
  afterAll(async () => {
    await db.close();
    await admin.end();
  });

  /** Resolves once none of the app's connections is running a statement (waiting on a lock included). */
  async function appIdle(): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const active =
        await admin`SELECT 1 FROM pg_stat_activity WHERE application_name = ${applicationName} AND state <> 'idle'`;
      if (active.length === 0) return;
      if (Date.now() > deadline) throw new Error("the app's statements never finished");
      await sleep(50);
    }
  }

  it("sendMessage without a key: 503 with Retry-After, and after the lock is released nothing was stored", async () => {
    const { app } = testApp(db, env);
    const alice = unique("did:plc:reqtimeout");
    const created = await clientFor(app, alice).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
    expect(created.status).toBe(200);
    const convoId = created.data.id;

    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const holding = new Promise<void>((resolve) => (locked = resolve));
    const lock = admin.begin(async (tx) => {
      await tx`SELECT 1 FROM conversations WHERE id = ${convoId} FOR UPDATE`;
      locked();
      await released;
    });
    await holding;

    // Held until the answer is in, which is past REQUEST_TIMEOUT_MS. Raw: a send without a key (the client keys
    // every send), and the exact Retry-After header.
    const sent = await xrpc(app, alice, "sendMessage", { body: { convoId, ciphertext: "AQID", epoch: 0 } });
    release();
    await lock;
    expect(sent.status, JSON.stringify(sent.body)).toBe(503);
    expect(sent.body.error).toBe("NotReady");
    expect(sent.headers.get("Retry-After")).toBe("1");

    await appIdle();
    const [row] = await admin`SELECT count(*)::int AS n FROM messages WHERE convo_id = ${convoId}`;
    expect(row!.n, "a request answered 'retry' stored nothing: a retry will not store it twice").toBe(0);
  });

  it("addMembers whose statements together outlast the request: a 503 means the member was not added", async () => {
    const { app } = testApp(db, env);
    const alice = unique("did:plc:reqtimeout");
    const bob = unique("did:plc:reqtimeout");
    const created = await clientFor(app, alice).createConvo({
      groupId: randomGroupId(),
      cipherSuite: SUITE,
      initialMembers: [bob],
    });
    expect(created.status).toBe(200);
    const convoId = created.data.id;
    expect((await clientFor(app, bob).leaveConvo({ convoId })).status).toBe(200);

    // Each wait stays under the statement limit (1500 ms); together they pass REQUEST_TIMEOUT_MS (2000 ms).
    const hold = (lockSql: (tx: postgres.TransactionSql) => Promise<unknown>) => {
      let release!: () => void;
      let held!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const holding = new Promise<void>((resolve) => (held = resolve));
      const done = admin.begin(async (tx) => {
        await lockSql(tx);
        held();
        await released;
      });
      return { holding, release, done };
    };
    const convo = hold((tx) => tx`SELECT 1 FROM conversations WHERE id = ${convoId} FOR UPDATE`);
    const member = hold((tx) => tx`SELECT 1 FROM members WHERE convo_id = ${convoId} AND did = ${bob} FOR UPDATE`);
    await Promise.all([convo.holding, member.holding]);

    const started = performance.now();
    const adding = outcome(clientFor(app, alice).addMembers({ convoId, didList: [bob] }));
    await sleep(800);
    convo.release();
    await sleep(Math.max(0, 2150 - (performance.now() - started)));
    member.release();
    const added = await adding;
    await Promise.all([convo.done, member.done]);

    await appIdle();
    const [row] =
      await admin`SELECT left_at IS NULL AS active FROM members WHERE convo_id = ${convoId} AND did = ${bob}`;
    if (added.status === 503) expect(row!.active, "a request answered 'retry' added nobody").toBe(false);
    else expect([added.status, row!.active]).toEqual([200, true]);
  });
});
