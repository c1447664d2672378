/**
 * Rule 5's reservations over real HTTP on real PostgreSQL: a package handed to a caller is that
 * caller's for KEY_PACKAGE_RESERVATION_SECONDS, so retries (even concurrent ones) burn nothing,
 * and no caller can drain another user's packages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { start, type BattleServer } from "./battle/server.js";
import { clientFor, outcome } from "./helpers/client.js";
import { testDatabase, unique } from "./helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage, TEST_CIPHER_SUITE as SUITE } from "./helpers/mls.js";

const db = testDatabase(5);
let server: BattleServer;
beforeAll(async () => {
  server = await start();
});
afterAll(async () => {
  await server?.stop();
  await db.close();
});

/** The typed client (one attempt) acting as `did` on the server. */
const api = (did: string) => clientFor(server.url, did);

const getKeyPackages = (caller: string, dids: string[]) => outcome(api(caller).getKeyPackages({ dids }));

async function publish(owner: string, count: number) {
  const packages = await Promise.all(Array.from({ length: count }, () => makeKeyPackage(owner)));
  for (const keyPackage of packages) {
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const res = await api(owner).publishKeyPackage({ keyPackage, cipherSuite: SUITE, expires });
    expect(res.status).toBe(200);
  }
}

const handedOut = (owner: string) =>
  db.query<{ handed_out_to: string }>(
    `SELECT handed_out_to FROM key_packages WHERE owner_did = $1 AND handed_out_to IS NOT NULL`,
    [owner],
  );

describe("getKeyPackages reservations", () => {
  it("20 concurrent GETs by one caller for one DID consume exactly one package, and all get it", async () => {
    const alice = unique("did:plc:ralice");
    const bob = unique("did:plc:rbob");
    await publish(alice, 5);
    const answers = await Promise.all(Array.from({ length: 20 }, () => getKeyPackages(bob, [alice])));
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    const hashes = new Set(answers.map((answer) => answer.data?.keyPackages[0]?.keyPackageHash));
    expect(hashes.size).toBe(1);
    expect(await handedOut(alice)).toEqual([{ handed_out_to: bob }]);
  });

  it("two different callers get different packages; a caller cannot drain the owner", async () => {
    const alice = unique("did:plc:ralice");
    const bob = unique("did:plc:rbob");
    const carol = unique("did:plc:rcarol");
    await publish(alice, 3);
    const [fromBob, fromCarol] = await Promise.all([getKeyPackages(bob, [alice]), getKeyPackages(carol, [alice])]);
    expect(fromBob.data!.keyPackages[0]!.keyPackageHash).not.toBe(fromCarol.data!.keyPackages[0]!.keyPackageHash);
    // Bob asking ten more times, with the DID repeated, still holds one.
    for (let i = 0; i < 10; i++) {
      const again = await getKeyPackages(bob, [alice, alice]);
      expect(again.data!.keyPackages.map((pkg) => pkg.keyPackageHash)).toEqual([
        fromBob.data!.keyPackages[0]!.keyPackageHash,
      ]);
    }
    expect((await handedOut(alice)).map((row) => row.handed_out_to).sort()).toEqual([bob, carol].sort());
  });

  it("welcomes built from its packages earn a caller at most three of an owner's packages within the reservation", async () => {
    const alice = unique("did:plc:ralice");
    const mallory = unique("did:plc:rmallory");
    await publish(alice, 6);
    const welcome = (await makeGroupWithCommit()).welcomeBytes;
    for (let round = 0; round < 6; round++) {
      const fetched = await getKeyPackages(mallory, [alice]);
      const hash = fetched.data?.keyPackages[0]?.keyPackageHash;
      if (!hash) break;
      const groupId = crypto.randomUUID().replace(/-/g, "");
      const created = await api(mallory).createConvo({
        groupId,
        cipherSuite: SUITE,
        initialMembers: [alice],
        welcomeMessage: welcome,
        keyPackageHashes: [{ did: alice, hash }],
      });
      expect(created.status).toBe(200);
    }
    expect(await handedOut(alice)).toEqual(Array(3).fill({ handed_out_to: mallory }));
  });
});
