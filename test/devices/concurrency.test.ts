/**
 * Devices under concurrency, over real HTTP against the real server (src/entry/node.ts) on real PostgreSQL:
 * the per-DID limit holds exactly, concurrent repeats register once, and concurrent revocations revoke once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { start, type BattleServer } from "../battle/server.js";
import { randomGroupId, testDatabase, unique } from "../helpers/context.js";
import { Api } from "../messaging/client.js";
import { insertRoster, membershipEvents, SUITE } from "./rows.js";

const LIMIT = 4;
let server: BattleServer;
let db: Database;
/** The typed client over HTTP (one attempt per call, every answer checked). */
let api: Api;

beforeAll(async () => {
  db = testDatabase(4);
  server = await start({ MAX_DEVICES_PER_DID: String(LIMIT), DATABASE_POOL_MAX: "20" });
  api = new Api(server.url, { retry: { deadlineMs: 30_000 } });
});
afterAll(async () => {
  await server?.stop();
  await db?.close();
});

const live = async (did: string) =>
  (
    await db.query<{ device_id: string }>(`SELECT device_id FROM devices WHERE did = $1 AND revoked_at IS NULL`, [did])
  ).map((row) => row.device_id);

describe("devices under concurrency (real server, real PostgreSQL)", () => {
  it(`${LIMIT * 6} concurrent registrations of different devices leave exactly ${LIMIT} registered`, async () => {
    for (let round = 0; round < 3; round++) {
      const alice = unique("did:plc:alice");
      const ids = Array.from({ length: LIMIT * 6 }, (_, i) => `device-${i}`);
      const answers = await Promise.all(ids.map((deviceId) => api.call(alice, "registerDevice", { deviceId })));
      expect(
        answers.every((a) => a.status === 200 || (a.status === 400 && a.error === "TooManyDevices")),
        JSON.stringify(answers),
      ).toBe(true);
      const accepted = ids.filter((_, i) => answers[i]!.status === 200);
      expect(accepted).toHaveLength(LIMIT);
      expect((await live(alice)).sort()).toEqual([...accepted].sort());
    }
  });

  it("concurrent registrations of one device register it once and all answer the same", async () => {
    const alice = unique("did:plc:alice");
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => api.call(alice, "registerDevice", { deviceId: "phone", name: `n${i % 3}` })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(new Set(answers.map((a) => JSON.stringify(a.data)))).toEqual(
      new Set([JSON.stringify({ deviceId: "phone", credentialIdentity: `${alice}#phone` })]),
    );
    expect(await live(alice)).toEqual(["phone"]);
  });

  // How many registrations win depends on when the revocations commit; none may push past the limit.
  it("registrations racing revocations at the limit never leave more than the limit live", async () => {
    const alice = unique("did:plc:alice");
    const first = Array.from({ length: LIMIT }, (_, i) => `old-${i}`);
    for (const deviceId of first) expect((await api.call(alice, "registerDevice", { deviceId })).status).toBe(200);
    const fresh = Array.from({ length: LIMIT * 3 }, (_, i) => `new-${i}`);
    const answers = await Promise.all([
      ...first.map((deviceId) => api.call(alice, "revokeDevice", { deviceId })),
      ...fresh.map((deviceId) => api.call(alice, "registerDevice", { deviceId })),
    ]);
    expect(answers.slice(0, LIMIT).map((a) => a.status)).toEqual(Array(LIMIT).fill(200));
    const accepted = fresh.filter((_, i) => answers[LIMIT + i]!.status === 200);
    expect(answers.slice(LIMIT).every((a) => a.status === 200 || a.error === "TooManyDevices")).toBe(true);
    expect(accepted.length).toBeLessThanOrEqual(LIMIT);
    expect((await live(alice)).sort()).toEqual([...accepted].sort());
  });

  it("concurrent revocations of one device all answer the same and post one event per conversation", async () => {
    const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
    expect((await api.call(alice, "registerDevice", { deviceId: "phone" })).status).toBe(200);
    const convos: string[] = [];
    for (let i = 0; i < 3; i++) {
      const created = await api.call(i % 2 ? bob : alice, "createConvo", {
        groupId: randomGroupId(),
        cipherSuite: SUITE,
        initialMembers: [i % 2 ? alice : bob],
      });
      expect(created.status, JSON.stringify(created)).toBe(200);
      convos.push(created.data!.id);
      await insertRoster(db, created.data!.id, [
        { did: bob, deviceId: "" },
        { did: alice, deviceId: "phone" },
      ]);
    }
    // Sends race the revocations in the same conversations: they share the conversation locks.
    const answers = await Promise.all([
      ...Array.from({ length: 10 }, () => api.call(alice, "revokeDevice", { deviceId: "phone" })),
      ...convos.map((convoId) =>
        api.call(bob, "sendMessage", { convoId, ciphertext: Uint8Array.of(1, 2, 3), epoch: 0 }),
      ),
    ]);
    expect(answers.map((a) => [a.status, a.error])).toEqual(Array(13).fill([200, undefined]));
    expect(answers.slice(0, 10).map((a) => a.data)).toEqual(Array(10).fill({ revoked: true }));
    for (const convoId of convos) {
      expect(await membershipEvents(db, convoId)).toEqual([
        expect.objectContaining({ type: "joined" }),
        expect.objectContaining({ type: "joined" }),
        { type: "deviceRevoked", did: alice, deviceId: "phone", actor: alice, epoch: 0 },
      ]);
    }
    expect(await live(alice)).toEqual([]);
  });
});
