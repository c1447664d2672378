/**
 * Rule 5 per device under concurrency, over real HTTP against the real server process on real PostgreSQL: many
 * callers claiming the packages of DIDs with several devices at once, one caller's concurrent repeats, and
 * concurrent publishers of one device's last-resort package.
 */
import { describe, expect, it } from "vitest";
import { decodeBase64, sha256Hex } from "../../src/bytes.js";
import { unique } from "../helpers/context.js";
import {
  devicePackage,
  devicePackages,
  publishInput,
  publishItem,
  realServer,
  registerDevice,
  revokeDevice,
  storedPackages,
} from "./fixtures.js";

const { db, call, api } = realServer();

async function publish(owner: string, packages: Uint8Array[], lastResort?: boolean) {
  const res = await api().call(owner, "publishKeyPackages", {
    keyPackages: packages.map((bytes) => publishInput(bytes, { lastResort })),
  });
  expect(res.status).toBe(200);
}

/** A raw publish item (base64 text) as the typed client's input (bytes). */
const asInput = (item: ReturnType<typeof publishItem>) => ({ ...item, keyPackage: decodeBase64(item.keyPackage)! });

/** getKeyPackages through the typed client, as `{status, body}`. */
async function getKeyPackages(caller: string, dids: string[]) {
  const answer = await api().call(caller, "getKeyPackages", { dids });
  return { status: answer.status, body: answer.data! };
}

describe("getKeyPackages under concurrency", () => {
  it("16 callers at once: no one-time package goes to two callers, each gets at most one per device, the last resort covers the rest", async () => {
    const alice = unique("did:plc:calice");
    const bob = unique("did:plc:cbob");
    for (const device of ["laptop", "phone", "old"]) await registerDevice(db, alice, device);
    await registerDevice(db, bob, "laptop");
    await publish(alice, await devicePackages(alice, "", 4));
    await publish(alice, await devicePackages(alice, "laptop", 4));
    const [laptopLastResort] = await devicePackages(alice, "laptop", 1);
    await publish(alice, [laptopLastResort!], true);
    await publish(alice, await devicePackages(alice, "phone", 2));
    await publish(alice, await devicePackages(alice, "old", 3));
    await publish(alice, await devicePackages(alice, "old", 1), true);
    await revokeDevice(db, alice, "old");
    await publish(bob, await devicePackages(bob, "laptop", 3));

    const callers = Array.from({ length: 16 }, () => unique("did:plc:ccaller"));
    const answers = await Promise.all(callers.map((caller) => getKeyPackages(caller, [alice, bob])));
    expect(answers.map((answer) => answer.status)).toEqual(Array(16).fill(200));

    const oneTime: string[] = [];
    const perDevice = new Map<string, number>();
    answers.forEach(({ body }, i) => {
      const devices = body.keyPackages.map((pkg) => `${pkg.did}#${pkg.deviceId}`);
      expect(new Set(devices).size, `caller ${i} got two packages of one device`).toBe(devices.length);
      for (const pkg of body.keyPackages) {
        perDevice.set(`${pkg.did}#${pkg.deviceId}`, (perDevice.get(`${pkg.did}#${pkg.deviceId}`) ?? 0) + 1);
        if (!pkg.lastResort) oneTime.push(pkg.keyPackageHash);
        else expect(pkg.keyPackageHash).toBe(sha256Hex(laptopLastResort!));
      }
      // A DID is missing exactly when nothing of it was answered.
      for (const did of [alice, bob]) {
        expect(body.missing.includes(did)).toBe(!body.keyPackages.some((pkg) => pkg.did === did));
      }
    });
    expect(new Set(oneTime).size).toBe(oneTime.length);
    // Every live device served as many callers as it had packages; the laptop's last resort served the rest.
    expect(Object.fromEntries(perDevice)).toEqual({
      [`${alice}#`]: 4,
      [`${alice}#laptop`]: 16,
      [`${alice}#phone`]: 2,
      [`${bob}#laptop`]: 3,
    });
    const lastResorts = answers.flatMap(({ body }) => body.keyPackages.filter((pkg) => pkg.lastResort));
    expect(lastResorts).toHaveLength(12);

    // The database agrees: each one-time package handed out is marked for the caller it went to, once.
    const rows = [...(await storedPackages(db, alice)), ...(await storedPackages(db, bob))];
    const holder = new Map(rows.map((row) => [row.hash, row.handed_out_to]));
    answers.forEach(({ body }, i) => {
      for (const pkg of body.keyPackages.filter((item) => !item.lastResort)) {
        expect(holder.get(pkg.keyPackageHash)).toBe(callers[i]);
      }
    });
    expect(rows.filter((row) => row.handed_out_to !== null)).toHaveLength(oneTime.length);
    expect(rows.filter((row) => row.device_id === "old").every((row) => row.handed_out_to === null)).toBe(true);

    // Everyone asks again at once: the reservations answer, nothing new is handed out.
    const again = await Promise.all(callers.map((caller) => getKeyPackages(caller, [alice, bob])));
    again.forEach(({ status, body }, i) => {
      expect(status).toBe(200);
      expect(body).toEqual(answers[i]!.body);
    });
    const after = [...(await storedPackages(db, alice)), ...(await storedPackages(db, bob))];
    expect(after.filter((row) => row.handed_out_to !== null)).toHaveLength(oneTime.length);
  });

  it("20 concurrent GETs by one caller take one package per device, and all get the same ones", async () => {
    const alice = unique("did:plc:calice");
    const bob = unique("did:plc:cbob");
    for (const device of ["laptop", "phone"]) {
      await registerDevice(db, alice, device);
      await publish(alice, await devicePackages(alice, device, 5));
    }
    await publish(alice, await devicePackages(alice, "", 5));
    const answers = await Promise.all(Array.from({ length: 20 }, () => getKeyPackages(bob, [alice])));
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    expect(answers[0]!.body.keyPackages.map((pkg) => pkg.deviceId)).toEqual(["", "laptop", "phone"]);
    for (const answer of answers) expect(answer.body).toEqual(answers[0]!.body);
    const handed = (await storedPackages(db, alice)).filter((row) => row.handed_out_to !== null);
    expect(handed.map((row) => [row.device_id, row.handed_out_to]).sort()).toEqual(
      [
        ["", bob],
        ["laptop", bob],
        ["phone", bob],
      ].sort(),
    );
  });
});

describe("publishing under concurrency", () => {
  it("concurrent batches replacing one device's last-resort package, some naming it as one-time, leave one and never fail", async () => {
    const alice = unique("did:plc:calice");
    await registerDevice(db, alice, "laptop");
    const shared = await devicePackages(alice, "laptop", 5);
    const contested = await devicePackage(alice, "laptop");
    const own = await devicePackages(alice, "laptop", 6);
    // Three kinds of batch: its own new last resort, `contested` as the last resort, `contested` as one-time.
    const batches = [
      ...own.map((bytes) => [...shared.map((b) => publishItem(b)), publishItem(bytes, { lastResort: true })]),
      ...Array.from({ length: 3 }, () => [
        ...shared.map((b) => publishItem(b)),
        publishItem(contested, { lastResort: true }),
      ]),
      ...Array.from({ length: 3 }, () => [publishItem(contested), ...shared.map((b) => publishItem(b))]),
    ].map((items) => [...items].sort(() => Math.random() - 0.5));
    const answers = await Promise.all(
      batches.map((keyPackages, i) =>
        // Half go through the idempotency transaction (the typed client), half through the pool (raw: no key).
        i % 2 === 0
          ? api()
              .call(alice, "publishKeyPackages", { keyPackages: keyPackages.map(asInput) })
              .then((answer) => ({ status: answer.status, body: answer.data! }))
          : call<{ published: number; duplicates: number }>(alice, "publishKeyPackages", { body: { keyPackages } }),
      ),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(batches.length).fill(200));

    const rows = await storedPackages(db, alice);
    expect(rows.filter((row) => row.last_resort)).toHaveLength(1);
    const hashes = rows.map((row) => row.hash);
    expect(new Set(hashes).size).toBe(hashes.length);
    for (const bytes of shared) expect(hashes).toContain(sha256Hex(bytes));
    const published = answers.reduce((sum, answer) => sum + answer.body.published, 0);
    expect(published).toBeGreaterThanOrEqual(rows.length);
  });

  it("publishing and renaming the device at once never deadlock", async () => {
    const alice = unique("did:plc:calice");
    expect((await api().call(alice, "registerDevice", { deviceId: "laptop" })).status).toBe(200);
    const batches = await Promise.all(Array.from({ length: 10 }, () => devicePackages(alice, "laptop", 2)));
    const answers = await Promise.all([
      ...batches.map((packages, i) =>
        api().call(alice, "publishKeyPackages", {
          keyPackages: packages.map((bytes, n) => publishInput(bytes, { lastResort: i % 2 === 1 && n === 0 })),
        }),
      ),
      ...Array.from({ length: 10 }, (_, i) =>
        api().call(alice, "registerDevice", { deviceId: "laptop", name: `laptop ${i}` }),
      ),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
  });

  it("revokeDevice racing publishers of the device's packages leaves none of them unhanded", async () => {
    for (let round = 0; round < 6; round++) {
      const alice = unique("did:plc:calice");
      expect((await api().call(alice, "registerDevice", { deviceId: "laptop" })).status).toBe(200);
      const batches = await Promise.all(Array.from({ length: 8 }, () => devicePackages(alice, "laptop", 3)));
      const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      // Publishers start one after another; the revocation starts among them, later each round.
      const publishing = batches.map((packages, i) =>
        later(i * 4).then(() =>
          api().call(alice, "publishKeyPackages", {
            // Odd batches carry a last-resort package (their first) too: the path that locks the owner exclusively.
            keyPackages: packages.map((bytes, n) => publishInput(bytes, { lastResort: i % 2 === 1 && n === 0 })),
          }),
        ),
      );
      const revoked = later(round * 6).then(() => api().call(alice, "revokeDevice", { deviceId: "laptop" }));
      const answers = await Promise.all(publishing);
      expect((await revoked).status).toBe(200);
      for (const answer of answers) {
        if (answer.status !== 200) expect(answer).toMatchObject({ status: 400, error: "InvalidKeyPackage" });
      }
      expect(await storedPackages(db, alice)).toEqual([]);
    }
  });
});
