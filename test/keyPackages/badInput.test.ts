/**
 * No input to the key package methods' new fields makes the server answer 5xx: device-form packages cut short or
 * mangled, random bytes, lastResort of the wrong type, bad deviceIds, the largest getKeyPackages request. Sent raw
 * (bad input, an answer's size), but for the well-formed publishing of the first test (the typed client).
 */
import { afterAll, describe, expect, it } from "vitest";
import { decodeMlsMessage, encodeMlsMessage } from "ts-mls/message.js";
import { testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { xrpc } from "../helpers/xrpc.js";
import { Api, expectOutcome } from "../messaging/client.js";
import { devicePackage, publishInput, publishItem, registerDevice, storedPackages } from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const { app } = testApp(db);

const alice = unique("did:plc:alice");
await registerDevice(db, alice, "laptop");
const laptop = await devicePackage(alice, "laptop");

/** Deterministic pseudo-random bytes (a failure names its seed). */
function randomBytes(seed: number, length: number): Uint8Array {
  let state = seed * 2654435761;
  return Uint8Array.from({ length }, () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state >>> 24;
  });
}

describe("publishing bad key packages", () => {
  it("stores a package only when its signatures verify, with its leaf's signature key", async () => {
    const message = decodeMlsMessage(laptop, 0)![0];
    if (message.wireformat !== "mls_key_package") throw new Error("expected a key package");
    const signature = Uint8Array.from(message.keyPackage.signature);
    signature[5]! ^= 0x10;
    const forged = encodeMlsMessage({ ...message, keyPackage: { ...message.keyPackage, signature } });
    const api = new Api(app);
    const refused = await api.call(alice, "publishKeyPackages", { keyPackages: [publishInput(forged)] });
    expectOutcome(refused, 400, "InvalidKeyPackage");

    const fresh = await devicePackage(alice, "laptop");
    expectOutcome(await api.call(alice, "publishKeyPackages", { keyPackages: [publishInput(fresh)] }), 200);
    const [row] = await db.query<{ signature_key: Uint8Array }>(
      `SELECT signature_key FROM key_packages WHERE owner_did = $1 AND key_package = $2`,
      [alice, fresh],
    );
    const stored = decodeMlsMessage(fresh, 0)![0];
    if (stored.wireformat !== "mls_key_package") throw new Error("expected a key package");
    expect(Buffer.from(row!.signature_key)).toEqual(Buffer.from(stored.keyPackage.leafNode.signaturePublicKey));
  });

  it("answers 4xx, never 5xx, for truncations, flipped bytes and random bytes of a device's package", async () => {
    const mangled: [string, Uint8Array][] = [];
    for (let cut = 1; cut < laptop.length; cut += 7) mangled.push([`cut at ${cut}`, laptop.subarray(0, cut)]);
    for (let at = 0; at < laptop.length; at += 11) {
      const flipped = laptop.slice();
      flipped[at] = flipped[at]! ^ 0xff;
      mangled.push([`flipped at ${at}`, flipped]);
    }
    for (let seed = 1; seed <= 40; seed++) mangled.push([`random ${seed}`, randomBytes(seed, 1 + ((seed * 37) % 600))]);
    mangled.push(["trailing byte", Uint8Array.from([...laptop, 0])]);
    for (const [name, bytes] of mangled) {
      for (const lastResort of [false, true]) {
        const res = await xrpc(app, alice, "publishKeyPackages", {
          body: { keyPackages: [publishItem(bytes, { lastResort })] },
        });
        expect({ name, lastResort, server: res.status >= 500 }).toEqual({ name, lastResort, server: false });
        // Every change to the signed bytes breaks a signature: nothing mangled is ever stored.
        expect({ name, status: res.status }).toEqual({ name, status: 400 });
      }
    }
  });

  it.each([
    ["a string", "true"],
    ["a number", 1],
    ["null", null],
    ["an object", { value: true }],
  ])("refuses lastResort as %s with 400 InvalidRequest", async (_name, lastResort) => {
    const body = { ...publishItem(laptop), lastResort };
    for (const [method, payload] of [
      ["publishKeyPackage", body],
      ["publishKeyPackages", { keyPackages: [body] }],
    ] as const) {
      const res = await xrpc(app, alice, method, { body: payload });
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: "InvalidRequest", message: expect.any(String) });
    }
  });

  it("refuses 100 device packages naming 100 unregistered devices in one batch with 400, storing nothing", async () => {
    const bob = unique("did:plc:bob");
    const packages = await Promise.all(Array.from({ length: 100 }, (_, i) => devicePackage(bob, `device-${i}`)));
    const res = await xrpc(app, bob, "publishKeyPackages", {
      body: { keyPackages: packages.map((bytes, i) => publishItem(bytes, { lastResort: i % 2 === 0 })) },
    });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: "InvalidKeyPackage", message: expect.any(String) });
    expect((res.body.message as string).length).toBeLessThan(600);
    expect(await storedPackages(db, bob)).toEqual([]);
  });
});

describe("bad queries", () => {
  it.each([
    ["an empty deviceId", [["deviceId", ""]]],
    ["a deviceId of 65 characters", [["deviceId", "d".repeat(65)]]],
    ["a deviceId with a slash", [["deviceId", "lap/top"]]],
    ["a deviceId with #", [["deviceId", "lap#top"]]],
    [
      "deviceId twice",
      [
        ["deviceId", "laptop"],
        ["deviceId", "laptop"],
      ],
    ],
  ])("getKeyPackageStats refuses %s with 400 InvalidRequest", async (_name, params) => {
    const search = new URLSearchParams(params as [string, string][]);
    const res = await app.request(`/xrpc/blue.catbird.mls.getKeyPackageStats?${search}`, {
      headers: { Authorization: `Bearer ${await tokenFor(alice)}` },
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "InvalidRequest", message: expect.any(String) });
  });

  it("answers the largest request: 100 DIDs of 11 devices each, within MAX_PAGE_BYTES", async () => {
    const owners = Array.from({ length: 100 }, () => unique("did:plc:owner"));
    const devices = Array.from({ length: 10 }, (_, i) => `d${i}`);
    await db.query(
      `INSERT INTO devices (did, device_id, created_at, last_seen_at)
       SELECT o.did, d.id, now(), now()
         FROM jsonb_array_elements_text($1::text::jsonb) AS o(did), jsonb_array_elements_text($2::text::jsonb) AS d(id)`,
      [JSON.stringify(owners), JSON.stringify(devices)],
    );
    // Two owners get a package on every device: one big enough (60 KB of stored bytes, as the server never
    // reads them back as MLS) that the two owners cannot both fit in a small page.
    const big = Uint8Array.from({ length: 60_000 }, (_, i) => i % 251);
    const [first, second] = owners;
    for (const owner of [first!, second!]) {
      for (const device of ["", ...devices]) {
        await db.query(
          `INSERT INTO key_packages (owner_did, device_id, cipher_suite, key_package, hash, expires_at, created_at, signature_key)
           VALUES ($1, $2, 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519', $3, encode(sha256($3), 'hex'), now() + interval '1 day', now(), '\\x00')`,
          [owner, device, Uint8Array.from([...big, device.length, ...new TextEncoder().encode(device)])],
        );
      }
    }
    const { app: small } = testApp(db, { MAX_PAGE_BYTES: String(1024 * 1024) });
    const res = await xrpc(small, unique("did:plc:carol"), "getKeyPackages", { query: { dids: owners } });
    expect(res.status).toBe(200);
    const size = JSON.stringify(res.body).length;
    expect(size).toBeGreaterThan(11 * 80_000);
    expect(size).toBeLessThanOrEqual(1024 * 1024);
    expect(res.body.keyPackages).toHaveLength(11);
    expect(res.body.deferred).toEqual([second]);
    expect(res.body.missing).toHaveLength(98);
    expect(res.body.missing).not.toContain(second);
  });
});
