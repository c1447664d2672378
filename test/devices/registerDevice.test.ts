/**
 * registerDevice and getDevices over HTTP (in process) on real PostgreSQL: registration, repeats and renames,
 * the per-DID limit, revoked ids, idempotency keys, the bound of getDevices and bad input. Well-formed calls go
 * through the typed client; bad input and random bodies are sent raw (`xrpc`).
 */
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { REVOKED_DEVICES_LISTED } from "../../src/services/devices.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { xrpc } from "../helpers/xrpc.js";
import { Api, expectOutcome } from "../messaging/client.js";

const db = testDatabase();
afterAll(() => db.close());

const { app } = testApp(db, { MAX_DEVICES_PER_DID: "3" });

const api = new Api(app);

/** registerDevice through the typed client, as an outcome; `idempotencyKey`: the call's key (else a fresh one). */
const register = (
  did: string,
  input: { deviceId: string; name?: string; idempotencyKey?: string },
  idempotencyKey?: string,
) => api.call(did, "registerDevice", { ...input, ...(idempotencyKey !== undefined && { idempotencyKey }) });
/** registerDevice sent raw, for bad input. */
const registerRaw = (did: string, body: unknown) => xrpc(app, did, "registerDevice", { body });
const devices = async (did: string) => {
  const answer = await api.call(did, "getDevices", {});
  expectOutcome(answer, 200);
  return answer.data!.devices;
};
const revoke = (did: string, deviceId: string) => api.call(did, "revokeDevice", { deviceId });
const liveCount = async (did: string) => {
  const [row] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM devices WHERE did = $1 AND revoked_at IS NULL`,
    [did],
  );
  return row!.n;
};

describe("registerDevice", () => {
  it("registers a device and answers its credential identity; getDevices lists it", async () => {
    const alice = unique("did:plc:alice");
    const answer = await register(alice, { deviceId: "phone-1.a_B", name: "Alice's phone 📱" });
    expectOutcome(answer, 200);
    expect(answer.data).toEqual({ deviceId: "phone-1.a_B", credentialIdentity: `${alice}#phone-1.a_B` });

    const listed = await devices(alice);
    expect(listed).toEqual([
      {
        deviceId: "phone-1.a_B",
        name: "Alice's phone 📱",
        createdAt: expect.any(String),
        lastSeenAt: expect.any(String),
        revoked: false,
      },
    ]);
    expect(listed[0]!.lastSeenAt).toBe(listed[0]!.createdAt);
    // Without a name, none is listed; and the devices are the caller's own only.
    expect((await register(alice, { deviceId: "laptop" })).status).toBe(200);
    expect((await devices(alice)).map((d) => [d.deviceId, d.name])).toEqual([
      ["phone-1.a_B", "Alice's phone 📱"],
      ["laptop", undefined],
    ]);
    expect(await devices(unique("did:plc:bob"))).toEqual([]);
  });

  it("is idempotent per (caller, deviceId): a repeat answers the same, a given name renames, an omitted one keeps it", async () => {
    const alice = unique("did:plc:alice");
    const first = await register(alice, { deviceId: "phone", name: "old" });
    const [before] = await devices(alice);

    const repeat = await register(alice, { deviceId: "phone" });
    expect(repeat.status).toBe(200);
    expect(repeat.data).toEqual(first.data);
    expect(await devices(alice)).toEqual([before]);

    expect((await register(alice, { deviceId: "phone", name: "new" })).data).toEqual(first.data);
    expect(await devices(alice)).toEqual([{ ...before, name: "new" }]);
    expect(await liveCount(alice)).toBe(1);

    // Another DID may use the same device id: ids are per DID.
    const bob = unique("did:plc:bob");
    expect((await register(bob, { deviceId: "phone" })).data).toEqual({
      deviceId: "phone",
      credentialIdentity: `${bob}#phone`,
    });
  });

  it("refuses a live device beyond MAX_DEVICES_PER_DID with 400 TooManyDevices; repeats and freed places still work", async () => {
    const alice = unique("did:plc:alice");
    for (const deviceId of ["a", "b", "c"]) expect((await register(alice, { deviceId })).status).toBe(200);
    const refused = await register(alice, { deviceId: "d" });
    expect(refused).toMatchObject({ status: 400, error: "TooManyDevices", message: expect.any(String) });
    expect(await liveCount(alice)).toBe(3);

    expect((await register(alice, { deviceId: "b", name: "still mine" })).status).toBe(200);
    expect((await revoke(alice, "a")).status).toBe(200);
    expect((await register(alice, { deviceId: "d" })).status).toBe(200);
    expect((await register(alice, { deviceId: "e" })).error).toBe("TooManyDevices");
    expect(await liveCount(alice)).toBe(3);
  });

  it("never registers a revoked device id again (403 DeviceRevoked), with or without a name", async () => {
    const alice = unique("did:plc:alice");
    expect((await register(alice, { deviceId: "old", name: "before" })).status).toBe(200);
    expect((await revoke(alice, "old")).status).toBe(200);
    for (const body of [{ deviceId: "old" }, { deviceId: "old", name: "after" }]) {
      const refused = await register(alice, body);
      expect(refused).toMatchObject({ status: 403, error: "DeviceRevoked", message: expect.any(String) });
    }
    expect(await devices(alice)).toEqual([expect.objectContaining({ deviceId: "old", name: "before", revoked: true })]);
  });

  it("replays an idempotency key's answer, success or refusal, and refuses the key with another body (422)", async () => {
    const alice = unique("did:plc:alice");
    const key = unique("register-1-");
    const first = await register(alice, { deviceId: "phone", name: "one" }, key);
    expect(first.status).toBe(200);
    expect((await register(alice, { deviceId: "phone", name: "two" })).status).toBe(200);

    const replay = await register(alice, { deviceId: "phone", name: "one" }, key);
    expect(replay).toMatchObject({ status: 200, replayed: true });
    expect(replay.data).toEqual(first.data);
    // The replay wrote nothing: the later rename stands.
    expect((await devices(alice))[0]!.name).toBe("two");

    const reused = await register(alice, { deviceId: "tablet" }, key);
    expect(reused.status).toBe(422);
    expect(reused.error).toBe("IdempotencyKeyReused");

    // A refusal is stored too: the same key answers it again even once the device could be registered.
    for (const deviceId of ["b", "c"]) expect((await register(alice, { deviceId })).status).toBe(200);
    const full = await register(alice, { deviceId: "d", idempotencyKey: "register-2" });
    expect(full.error).toBe("TooManyDevices");
    expect((await revoke(alice, "b")).status).toBe(200);
    // A stored refusal comes back as the refusal: the client sees no replay header on an error answer.
    const again = await xrpc(app, alice, "registerDevice", {
      body: { deviceId: "d", idempotencyKey: "register-2" },
      headers: { "Idempotency-Key": "register-2" },
    });
    expect([again.status, again.body.error, again.headers.get("Idempotent-Replayed")]).toEqual([
      400,
      "TooManyDevices",
      "true",
    ]);
    expect((await register(alice, { deviceId: "d" })).status).toBe(200);
  });

  it("answers 400 InvalidRequest, never 5xx, for bad input", async () => {
    const alice = unique("did:plc:alice");
    const bad: unknown[] = [
      {},
      { deviceId: "" },
      { deviceId: "a b" },
      { deviceId: "x".repeat(65) },
      { deviceId: "é" },
      { deviceId: "a#b" },
      { deviceId: "a/b" },
      { deviceId: 7 },
      { deviceId: null },
      { deviceId: ["a"] },
      { deviceId: "ok", name: "n".repeat(65) },
      { deviceId: "ok", name: "🙂".repeat(65) },
      { deviceId: "ok", name: "nul\u0000" },
      { deviceId: "ok", name: "bell\u0007" },
      { deviceId: "ok", name: "\ud800" },
      { deviceId: "ok", name: 5 },
      { deviceId: "ok", name: null },
      { deviceId: "ok", extra: true },
      { deviceId: "ok", did: alice },
      [],
      "phone",
      null,
    ];
    for (const body of bad) {
      const answer = await registerRaw(alice, body);
      expect([answer.status, answer.body.error], JSON.stringify(body)).toEqual([400, "InvalidRequest"]);
    }
    for (const text of ["{", "not json", '{"deviceId":"a","deviceId":"b"'] as const) {
      const answer = await registerRaw(alice, text);
      expect(answer.status, text).toBe(400);
    }
    // The longest of each is accepted: a name's length is counted in characters (code points), as Postgres does.
    expect((await register(alice, { deviceId: "x".repeat(64), name: "n".repeat(64) })).status).toBe(200);
    expect((await register(alice, { deviceId: "y", name: "🙂".repeat(64) })).status).toBe(200);
    expect(await liveCount(alice)).toBe(2);
  });

  it("answers no 5xx to random bodies", async () => {
    const alice = unique("did:plc:fuzz");
    const deviceIds = fc.oneof(fc.string({ maxLength: 70 }), fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/));
    const bodies = fc.oneof(
      fc.record({
        deviceId: deviceIds,
        name: fc.option(fc.string({ maxLength: 80, unit: "binary" }), { nil: undefined }),
      }),
      fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 })),
      fc.jsonValue({ maxDepth: 3 }),
    );
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const answer = await registerRaw(alice, body ?? null);
        expect(answer.status, JSON.stringify(body)).toBeLessThan(500);
        expect([200, 400]).toContain(answer.status);
      }),
      { numRuns: 150 },
    );
    for (const method of ["revokeDevice"]) {
      await fc.assert(
        fc.asyncProperty(bodies, async (body) => {
          const answer = await xrpc(app, alice, method, { body: body ?? null });
          expect([200, 400, 403], JSON.stringify(body)).toContain(answer.status);
        }),
        { numRuns: 100 },
      );
    }
  });
});

describe("getDevices", () => {
  it(`lists every live device and only the ${REVOKED_DEVICES_LISTED} most recently revoked ones`, async () => {
    const alice = unique("did:plc:alice");
    expect((await register(alice, { deviceId: "live-1" })).status).toBe(200);
    expect((await register(alice, { deviceId: "live-2" })).status).toBe(200);
    const base = Date.now() - 3_600_000;
    const revokedCount = REVOKED_DEVICES_LISTED + 7;
    await db.query(
      `INSERT INTO devices (did, device_id, name, created_at, last_seen_at, revoked_at)
       SELECT $1, 'gone-' || n, NULL, $2::timestamptz + n * interval '1 second', $2::timestamptz + n * interval '1 second',
              $2::timestamptz + (1000 - n) * interval '1 second'
         FROM generate_series(1, $3) AS n`,
      [alice, new Date(base), revokedCount],
    );
    const listed = await devices(alice);
    // Revoked latest: gone-1 was revoked last (1000 - n), so gone-1 .. gone-20 are listed.
    const expectedRevoked = Array.from({ length: REVOKED_DEVICES_LISTED }, (_, i) => `gone-${i + 1}`);
    expect(
      listed
        .filter((d) => d.revoked)
        .map((d) => d.deviceId)
        .sort(),
    ).toEqual(expectedRevoked.sort());
    expect(listed.filter((d) => !d.revoked).map((d) => d.deviceId)).toEqual(["live-1", "live-2"]);
    // Oldest first.
    const created = listed.map((d) => d.createdAt);
    expect([...created].sort()).toEqual(created);
  });

  it("takes no parameters: an unknown one is 400", async () => {
    const answer = await xrpc(app, unique("did:plc:alice"), "getDevices", { query: { deviceId: "x" } });
    expect([answer.status, answer.body.error]).toEqual([400, "InvalidRequest"]);
  });

  it("needs a token", async () => {
    expectOutcome(await api.call(null, "getDevices", {}), 401);
    expectOutcome(await api.call(null, "registerDevice", { deviceId: "x" }), 401);
    expectOutcome(await api.call(null, "revokeDevice", { deviceId: "x" }), 401);
  });
});
