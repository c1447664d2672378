/**
 * Rule 5 per device (issue 14): a key package belongs to the device its credential names, getKeyPackages hands out
 * one package per live device, last-resort packages are the never-consumed fallback, and the answer is bounded in
 * bytes. In-process app on the run's real PostgreSQL; the concurrent cases are in concurrency.test.ts.
 */
import { afterAll, describe, expect, it } from "vitest";
import { decodeBase64, sha256Hex } from "../../src/bytes.js";
import { ManualClock } from "../../src/clock.js";
import type { Env } from "../../src/config.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage } from "../helpers/mls.js";
import { xrpc } from "../helpers/xrpc.js";
import { Api, expectOutcome, ok } from "../messaging/client.js";
import {
  devicePackage,
  devicePackages,
  publishItem,
  registerDevice,
  revokeDevice,
  storedPackages,
  SUITE,
  type KeyPackagesAnswer,
} from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());

function client(env: Env = {}) {
  const clock = new ManualClock();
  const { app } = testApp(db, env, clock);
  const api = new Api(app);
  const publish = async (did: string, items: ReturnType<typeof publishItem>[]) => {
    const res = await ok(api.as(did).publishKeyPackages({ keyPackages: items.map(asInput) }));
    return res.data;
  };
  /** Publishes each package in its own call, in order (so created_at orders them). */
  const publishEach = async (did: string, packages: Uint8Array[], lastResort?: boolean) => {
    for (const bytes of packages) await publish(did, [publishItem(bytes, { lastResort })]);
  };
  const fetchFor = async (caller: string, dids: string[], cipherSuite?: string) => {
    const res = await ok(api.as(caller).getKeyPackages({ dids, ...(cipherSuite && { cipherSuite }) }));
    return res.data;
  };
  /** getKeyPackages raw: the answer's size as sent. */
  const fetchRaw = async (caller: string, dids: string[]) => {
    const res = await xrpc(app, caller, "getKeyPackages", { query: { dids } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body as KeyPackagesAnswer;
  };
  return { app, api, clock, publish, publishEach, fetchFor, fetchRaw };
}

/** A publish item (base64 text) as the typed client's input (bytes). */
const asInput = (item: ReturnType<typeof publishItem>) => ({ ...item, keyPackage: decodeBase64(item.keyPackage)! });

const hashOf = (bytes: Uint8Array) => sha256Hex(bytes);
const handedTo = (answer: {
  keyPackages: { did: string; deviceId: string; keyPackageHash: string; lastResort: boolean }[];
}) =>
  answer.keyPackages.map(({ did, deviceId, keyPackageHash, lastResort }) => ({
    did,
    deviceId,
    keyPackageHash,
    lastResort,
  }));

describe("publishing per device", () => {
  it("stores a package naming a registered device under that device, the bare DID under the implicit one", async () => {
    const { publish } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    const laptop = await devicePackage(alice, "laptop");
    const implicit = await devicePackage(alice);
    expect(await publish(alice, [publishItem(laptop), publishItem(implicit)])).toEqual({ published: 2, duplicates: 0 });
    const rows = await storedPackages(db, alice);
    expect(new Map(rows.map((row) => [row.hash, row.device_id]))).toEqual(
      new Map([
        [hashOf(laptop), "laptop"],
        [hashOf(implicit), ""],
      ]),
    );
    expect(rows.every((row) => !row.last_resort)).toBe(true);
  });

  it("refuses a package naming another DID's device, an unregistered device or a revoked one, storing nothing of its batch", async () => {
    const { api } = client();
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    await registerDevice(db, alice, "laptop");
    await registerDevice(db, alice, "old");
    await revokeDevice(db, alice, "old");
    await registerDevice(db, bob, "laptop");
    const good = publishItem(await devicePackage(alice, "laptop"));
    const refused = {
      "another DID's registered device": await devicePackage(bob, "laptop"),
      "an unregistered device": await devicePackage(alice, "ghost"),
      "a revoked device": await devicePackage(alice, "old"),
      "an empty device id": await makeKeyPackage(`${alice}#`),
      "a device id with a bad character": await makeKeyPackage(`${alice}#lap/top`),
      "two hashes": await makeKeyPackage(`${alice}#laptop#x`),
    };
    for (const [name, bytes] of Object.entries(refused)) {
      for (const [method, send] of [
        ["publishKeyPackage", () => api.call(alice, "publishKeyPackage", asInput(publishItem(bytes)))],
        [
          "publishKeyPackages",
          () => api.call(alice, "publishKeyPackages", { keyPackages: [good, publishItem(bytes)].map(asInput) }),
        ],
        [
          "publishKeyPackages",
          () =>
            api.call(alice, "publishKeyPackages", {
              keyPackages: [good, publishItem(bytes, { lastResort: true })].map(asInput),
            }),
        ],
      ] as const) {
        const res = await send();
        expect({ name, method, status: res.status, error: res.error }).toEqual({
          name,
          method,
          status: 400,
          error: "InvalidKeyPackage",
        });
      }
    }
    expect(await storedPackages(db, alice)).toEqual([]);
  });

  it("a new last-resort package replaces its device's older one for the suite; other devices keep theirs", async () => {
    const { publish } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    await registerDevice(db, alice, "phone");
    const [first, second] = await devicePackages(alice, "laptop", 2);
    const phone = await devicePackage(alice, "phone");
    const implicit = await devicePackage(alice);
    expect(
      await publish(alice, [
        publishItem(first!, { lastResort: true }),
        publishItem(phone, { lastResort: true }),
        publishItem(implicit, { lastResort: true }),
      ]),
    ).toEqual({ published: 3, duplicates: 0 });
    expect(await publish(alice, [publishItem(second!, { lastResort: true })])).toEqual({ published: 1, duplicates: 0 });

    const rows = await storedPackages(db, alice);
    expect(rows.map((row) => [row.device_id, row.hash, row.last_resort]).sort()).toEqual(
      [
        ["", hashOf(implicit), true],
        ["laptop", hashOf(second!), true],
        ["phone", hashOf(phone), true],
      ].sort(),
    );
    // The replaced one, published again, replaces the newer one in turn: the latest publication wins.
    expect(await publish(alice, [publishItem(first!, { lastResort: true })])).toEqual({ published: 1, duplicates: 0 });
    const laptopRows = (await storedPackages(db, alice)).filter((row) => row.device_id === "laptop");
    expect(laptopRows.map((row) => row.hash)).toEqual([hashOf(first!)]);
  });

  it("a batch replacing a last-resort package may name the replaced one too: the new one takes its place", async () => {
    const { publish } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    const [older, newer, plain] = await devicePackages(alice, "laptop", 3);
    await publish(alice, [publishItem(older!, { lastResort: true })]);
    expect(
      await publish(alice, [publishItem(older!), publishItem(newer!, { lastResort: true }), publishItem(plain!)]),
    ).toEqual({
      published: 2,
      duplicates: 1,
    });
    const rows = await storedPackages(db, alice);
    expect(rows.map((row) => [row.hash, row.last_resort]).sort()).toEqual(
      [
        [hashOf(newer!), true],
        [hashOf(plain!), false],
      ].sort(),
    );
  });

  it("republishing stored bytes with the other lastResort flag refreshes the expiry and keeps the first flag", async () => {
    const { publish } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    const [oneTime, lastResort] = await devicePackages(alice, "laptop", 2);
    await publish(alice, [publishItem(oneTime!), publishItem(lastResort!, { lastResort: true })]);
    const later = new Date(Date.now() + 3_600_000);
    expect(
      await publish(alice, [
        publishItem(oneTime!, { lastResort: true, now: later }),
        publishItem(lastResort!, { lastResort: false, now: later }),
      ]),
    ).toEqual({ published: 0, duplicates: 2 });
    const rows = await storedPackages(db, alice);
    expect(rows.map((row) => [row.hash, row.last_resort]).sort()).toEqual(
      [
        [hashOf(oneTime!), false],
        [hashOf(lastResort!), true],
      ].sort(),
    );
    expect(rows.every((row) => row.expires_at.getTime() === later.getTime() + 86_400_000)).toBe(true);
  });

  it("refuses an ambiguous batch: one package under both flags, or two last-resort packages for one device and suite", async () => {
    const { api } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    const [a, b] = await devicePackages(alice, "laptop", 2);
    for (const keyPackages of [
      [publishItem(a!), publishItem(a!, { lastResort: true })],
      [publishItem(a!, { lastResort: true }), publishItem(b!, { lastResort: true })],
    ]) {
      const res = await api.call(alice, "publishKeyPackages", { keyPackages: keyPackages.map(asInput) });
      expect(res).toMatchObject({ status: 400, error: "InvalidRequest", message: expect.any(String) });
    }
    expect(await storedPackages(db, alice)).toEqual([]);
  });
});

describe("getKeyPackages per device", () => {
  it("hands out one package per live device, oldest first, with its deviceId; DIDs with none are missing", async () => {
    const { publishEach, fetchFor } = client();
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const carol = unique("did:plc:carol");
    for (const device of ["laptop", "phone", "old"]) await registerDevice(db, alice, device);
    await registerDevice(db, bob, "laptop");
    const implicit = await devicePackages(alice, "", 2);
    const laptop = await devicePackages(alice, "laptop", 2);
    await publishEach(alice, implicit);
    await publishEach(alice, laptop);
    await publishEach(alice, await devicePackages(alice, "old", 2));
    await revokeDevice(db, alice, "old");
    await publishEach(bob, await devicePackages(bob, "laptop", 1));

    const answer = await fetchFor(unique("did:plc:dave"), [carol, alice, bob, alice]);
    expect(handedTo(answer)).toEqual([
      { did: alice, deviceId: "", keyPackageHash: hashOf(implicit[0]!), lastResort: false },
      { did: alice, deviceId: "laptop", keyPackageHash: hashOf(laptop[0]!), lastResort: false },
      { did: bob, deviceId: "laptop", keyPackageHash: expect.any(String), lastResort: false },
    ]);
    expect(answer.keyPackages.every((pkg) => pkg.cipherSuite === SUITE)).toBe(true);
    expect(answer.missing).toEqual([carol]);
    expect(answer.deferred).toBeUndefined();
  });

  it("reserves per device: the same caller gets the same package of each device back, others get other ones", async () => {
    const { publishEach, fetchFor } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    await publishEach(alice, await devicePackages(alice, "", 2));
    await publishEach(alice, await devicePackages(alice, "laptop", 2));
    const bob = unique("did:plc:bob");
    const first = await fetchFor(bob, [alice]);
    expect(first.keyPackages.map((pkg) => pkg.deviceId)).toEqual(["", "laptop"]);
    expect(await fetchFor(bob, [alice])).toEqual(first);
    const carol = await fetchFor(unique("did:plc:carol"), [alice]);
    expect(carol.keyPackages.map((pkg) => pkg.deviceId)).toEqual(["", "laptop"]);
    const handed = [...first.keyPackages, ...carol.keyPackages].map((pkg) => pkg.keyPackageHash);
    expect(new Set(handed).size).toBe(4);
    expect(await fetchFor(unique("did:plc:dave"), [alice])).toEqual({ keyPackages: [], missing: [alice] });
  });

  it("hands a device's last-resort package to everyone once its one-time packages are gone, never marking it", async () => {
    const { publishEach, fetchFor } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    const oneTime = await devicePackages(alice, "laptop", 2);
    const [lastResort] = await devicePackages(alice, "laptop", 1);
    await publishEach(alice, oneTime);
    await publishEach(alice, [lastResort!], true);

    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await fetchFor(unique("did:plc:caller"), [alice]));
    expect(answers.map((answer) => handedTo(answer))).toEqual([
      [{ did: alice, deviceId: "laptop", keyPackageHash: hashOf(oneTime[0]!), lastResort: false }],
      [{ did: alice, deviceId: "laptop", keyPackageHash: hashOf(oneTime[1]!), lastResort: false }],
      ...Array(3).fill([{ did: alice, deviceId: "laptop", keyPackageHash: hashOf(lastResort!), lastResort: true }]),
    ]);
    const row = (await storedPackages(db, alice)).find((stored) => stored.last_resort)!;
    expect(row).toMatchObject({ handed_out_to: null, consumed_at: null });
  });

  it("gives a caller who took its share of a device's packages the last-resort one, and one without it nothing", async () => {
    const { api, publishEach, fetchFor } = client();
    const alice = unique("did:plc:alice");
    const mallory = unique("did:plc:mallory");
    await registerDevice(db, alice, "laptop");
    await registerDevice(db, alice, "phone");
    await publishEach(alice, await devicePackages(alice, "laptop", 5));
    await publishEach(alice, await devicePackages(alice, "phone", 5));
    const [lastResort] = await devicePackages(alice, "laptop", 1);
    await publishEach(alice, [lastResort!], true);
    const welcome = (await makeGroupWithCommit()).welcomeBytes;
    // Each round mallory uses the laptop's package in a welcome, so her reservation no longer answers.
    for (let round = 0; round < 3; round++) {
      const laptop = (await fetchFor(mallory, [alice])).keyPackages.find((pkg) => pkg.deviceId === "laptop")!;
      expect(laptop.lastResort).toBe(false);
      const created = await api.call(mallory, "createConvo", {
        groupId: randomGroupId(),
        cipherSuite: SUITE,
        initialMembers: [alice],
        welcomeMessage: welcome,
        keyPackageHashes: [{ did: alice, hash: laptop.keyPackageHash }],
      });
      expectOutcome(created, 200);
    }
    const after = await fetchFor(mallory, [alice]);
    expect(after.keyPackages.map(({ deviceId, lastResort: last }) => [deviceId, last])).toEqual([
      ["laptop", true],
      ["phone", false],
    ]);
    expect(after.keyPackages[0]!.keyPackageHash).toBe(hashOf(lastResort!));
    // Three laptop packages and one phone package went to mallory; the other two laptop packages are still there.
    const rows = await storedPackages(db, alice);
    const taken = (device: string) => rows.filter((row) => row.device_id === device && row.handed_out_to).length;
    expect([taken("laptop"), taken("phone")]).toEqual([3, 1]);
  });

  it("never hands out a revoked device's packages: not fresh ones, not a reservation, not its last-resort one", async () => {
    const { publishEach, fetchFor } = client();
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    await registerDevice(db, alice, "tablet");
    await publishEach(alice, await devicePackages(alice, "tablet", 3));
    await publishEach(alice, await devicePackages(alice, "tablet", 1), true);
    const before = await fetchFor(bob, [alice]);
    expect(before.keyPackages.map((pkg) => pkg.deviceId)).toEqual(["tablet"]);

    await revokeDevice(db, alice, "tablet");
    expect(await fetchFor(bob, [alice])).toEqual({ keyPackages: [], missing: [alice] });
    expect(await fetchFor(unique("did:plc:carol"), [alice])).toEqual({ keyPackages: [], missing: [alice] });
  });

  it("never hands out an expired package, last-resort ones included", async () => {
    const { clock, publishEach, fetchFor } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    await publishEach(alice, await devicePackages(alice, "laptop", 1));
    await publishEach(alice, await devicePackages(alice, "laptop", 1), true);
    clock.advance(2 * 86_400_000);
    expect(await fetchFor(unique("did:plc:bob"), [alice])).toEqual({ keyPackages: [], missing: [alice] });
  });

  it("filters by cipher suite per device, last-resort packages too", async () => {
    const { publish, fetchFor } = client();
    const alice = unique("did:plc:alice");
    const other = "MLS_128_DHKEMP256_AES128GCM_SHA256_P256";
    await registerDevice(db, alice, "laptop");
    const p256 = await makeKeyPackage(`${alice}#laptop`, undefined, { cipherSuite: other });
    await publish(alice, [{ ...publishItem(p256, { lastResort: true }), cipherSuite: other }]);
    await publish(alice, [publishItem(await devicePackage(alice, "laptop"), { lastResort: true })]);
    const answer = await fetchFor(unique("did:plc:bob"), [alice], other);
    expect(handedTo(answer)).toEqual([
      { did: alice, deviceId: "laptop", keyPackageHash: hashOf(p256), lastResort: true },
    ]);
    expect(answer.keyPackages[0]!.cipherSuite).toBe(other);
  });
});

describe("last-resort packages and welcomes", () => {
  it("a welcome confirmed or retired with a last-resort package leaves it unconsumed; a one-time one is consumed", async () => {
    const { api, publishEach, fetchFor } = client();
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    const [oneTime] = await devicePackages(alice, "laptop", 1);
    const [lastResort] = await devicePackages(alice, "laptop", 1);
    await publishEach(alice, [oneTime!]);
    await publishEach(alice, [lastResort!], true);
    const welcome = (await makeGroupWithCommit()).welcomeBytes;

    /** A conversation by `creator` adding alice with the package `creator` was handed. */
    const invite = async (creator: string) => {
      const [pkg] = (await fetchFor(creator, [alice])).keyPackages;
      const created = await ok(
        api.as(creator).createConvo({
          groupId: randomGroupId(),
          cipherSuite: SUITE,
          initialMembers: [alice],
          welcomeMessage: welcome,
          keyPackageHashes: [{ did: alice, hash: pkg!.keyPackageHash }],
        }),
      );
      return { convoId: created.data.id, pkg: pkg! };
    };
    const confirm = async (convoId: string) => {
      expectOutcome(await api.call(alice, "getWelcome", { convoId }), 200);
      const res = await api.call(alice, "confirmWelcome", { convoId, success: true });
      expect(res.data).toEqual({ confirmed: true });
    };
    const consumed = async () =>
      new Map((await storedPackages(db, alice)).map((row) => [row.hash, row.consumed_at !== null]));

    const first = await invite(unique("did:plc:bob"));
    expect(first.pkg.lastResort).toBe(false);
    await confirm(first.convoId);
    expect((await consumed()).get(hashOf(oneTime!))).toBe(true);

    const second = await invite(unique("did:plc:carol"));
    expect(second.pkg).toMatchObject({ lastResort: true, keyPackageHash: hashOf(lastResort!) });
    await confirm(second.convoId);
    expect((await consumed()).get(hashOf(lastResort!))).toBe(false);

    // A welcome retired unfetched (its creator removes alice) consumes nothing either.
    const dave = unique("did:plc:dave");
    const third = await invite(dave);
    expect(third.pkg.lastResort).toBe(true);
    const removed = await api.call(dave, "leaveConvo", { convoId: third.convoId, targetDid: alice });
    expect(removed.status).toBe(200);
    const retired = await db.query<{ state: string }>(
      `SELECT state FROM welcome_messages WHERE convo_id = $1 AND recipient_did = $2`,
      [third.convoId, alice],
    );
    expect(retired).toEqual([{ state: "expired" }]);
    expect((await consumed()).get(hashOf(lastResort!))).toBe(false);
    // And it still goes out.
    expect((await fetchFor(unique("did:plc:erin"), [alice])).keyPackages[0]!.keyPackageHash).toBe(hashOf(lastResort!));
  });
});

describe("the byte bound", () => {
  it("answers whole DIDs while they fit in MAX_PAGE_BYTES, defers the rest and hands out none of theirs", async () => {
    const maxBytes = 4096;
    const { publishEach, fetchRaw } = client({ MAX_PAGE_BYTES: String(maxBytes) });
    const owners = Array.from({ length: 6 }, () => unique("did:plc:owner"));
    for (const owner of owners) {
      await registerDevice(db, owner, "laptop");
      await publishEach(owner, await devicePackages(owner, "", 1));
      await publishEach(owner, await devicePackages(owner, "laptop", 1));
    }
    const bob = unique("did:plc:bob");
    const answered: string[] = [];
    let asked = owners;
    for (let round = 0; round < owners.length && asked.length > 0; round++) {
      // Raw: the answer's size as sent is the point.
      const answer = await fetchRaw(bob, asked);
      expect(JSON.stringify(answer).length).toBeLessThanOrEqual(maxBytes);
      const dids = [...new Set(answer.keyPackages.map((pkg) => pkg.did))];
      expect(dids.length).toBeGreaterThan(0);
      // Whole DIDs, in the order asked: both devices of each answered DID.
      expect(dids).toEqual(asked.slice(0, dids.length));
      expect(answer.keyPackages).toHaveLength(2 * dids.length);
      expect(answer.missing).toEqual([]);
      expect(answer.deferred ?? []).toEqual(asked.slice(dids.length));
      // Nothing of a deferred DID was handed out.
      for (const did of answer.deferred ?? []) {
        expect((await storedPackages(db, did)).every((row) => row.handed_out_to === null)).toBe(true);
      }
      answered.push(...dids);
      asked = answer.deferred ?? [];
    }
    expect(answered).toEqual(owners);
    expect(answered.length).toBeGreaterThan(2);
  });

  it("always answers the first DID, even when its devices alone exceed the bound", async () => {
    const { publishEach, fetchFor } = client({ MAX_PAGE_BYTES: "1024" });
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    for (const device of ["a", "b", "c"]) {
      await registerDevice(db, alice, device);
      await publishEach(alice, await devicePackages(alice, device, 1));
    }
    await publishEach(bob, await devicePackages(bob, "", 1));
    const answer = await fetchFor(unique("did:plc:carol"), [alice, bob]);
    expect(answer.keyPackages.map((pkg) => pkg.deviceId)).toEqual(["a", "b", "c"]);
    expect(answer.deferred).toEqual([bob]);
    expect((await storedPackages(db, bob))[0]!.handed_out_to).toBeNull();
  });
});

describe("getKeyPackageStats per device", () => {
  it("tells an old client (no deviceId: the implicit device) to replenish its own stock, whatever its DID's new devices hold", async () => {
    const { api, publishEach } = client({ KEY_PACKAGE_THRESHOLD: "2" });
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "phone");
    await publishEach(alice, await devicePackages(alice, "phone", 5));
    await publishEach(alice, await devicePackages(alice, "", 1));
    const stats = await api.call(alice, "getKeyPackageStats", {});
    expect(stats.data).toEqual({ available: 1, threshold: 2, needsReplenish: true });
  });

  it("counts one device's one-time packages with deviceId, the implicit device's without; last-resort ones never", async () => {
    const { api, publishEach, fetchFor } = client({ KEY_PACKAGE_THRESHOLD: "2" });
    const alice = unique("did:plc:alice");
    await registerDevice(db, alice, "laptop");
    await registerDevice(db, alice, "gone");
    await revokeDevice(db, alice, "gone");
    await publishEach(alice, await devicePackages(alice, "laptop", 2));
    await publishEach(alice, await devicePackages(alice, "laptop", 1), true);
    await publishEach(alice, await devicePackages(alice, "", 1));
    const stats = async (deviceId?: string) =>
      api.call(alice, "getKeyPackageStats", deviceId === undefined ? {} : { deviceId });
    expect((await stats()).data).toEqual({ available: 1, threshold: 2, needsReplenish: true });
    expect((await stats("laptop")).data).toEqual({ available: 2, threshold: 2, needsReplenish: false });
    await fetchFor(unique("did:plc:bob"), [alice]);
    expect((await stats("laptop")).data).toEqual({ available: 1, threshold: 2, needsReplenish: true });
    expect((await stats()).data).toEqual({ available: 0, threshold: 2, needsReplenish: true });
    const ghost = await stats("ghost");
    expect(ghost, JSON.stringify(ghost)).toMatchObject({ status: 403, error: "UnknownDevice" });
    expect(await stats("gone")).toMatchObject({ status: 403, error: "DeviceRevoked" });
  });
});
