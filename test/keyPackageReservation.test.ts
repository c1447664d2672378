/**
 * Rule 5's reservations over real HTTP on real PostgreSQL: a package handed to a caller is that
 * caller's for KEY_PACKAGE_RESERVATION_SECONDS, so retries (even concurrent ones) burn nothing,
 * and no caller can drain another user's packages.
 */
import { describe, expect, it } from "vitest";
import { encodeBase64 } from "../src/bytes.js";
import { unique } from "./helpers/context.js";
import { makeGroupWithCommit } from "./helpers/mls.js";
import { devicePackage, publishItem, realServer, SUITE } from "./keyPackages/fixtures.js";

const { db, call, getKeyPackages } = realServer();

async function publish(owner: string, count: number) {
  const packages = await Promise.all(Array.from({ length: count }, () => devicePackage(owner)));
  for (const bytes of packages) {
    const res = await call(owner, "publishKeyPackage", { body: publishItem(bytes) });
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
    const hashes = new Set(answers.map((answer) => answer.body.keyPackages[0]?.keyPackageHash));
    expect(hashes.size).toBe(1);
    expect(await handedOut(alice)).toEqual([{ handed_out_to: bob }]);
  });

  it("two different callers get different packages; a caller cannot drain the owner", async () => {
    const alice = unique("did:plc:ralice");
    const bob = unique("did:plc:rbob");
    const carol = unique("did:plc:rcarol");
    await publish(alice, 3);
    const [fromBob, fromCarol] = await Promise.all([getKeyPackages(bob, [alice]), getKeyPackages(carol, [alice])]);
    expect(fromBob.body.keyPackages[0]!.keyPackageHash).not.toBe(fromCarol.body.keyPackages[0]!.keyPackageHash);
    // Bob asking ten more times, with the DID repeated, still holds one.
    for (let i = 0; i < 10; i++) {
      const again = await getKeyPackages(bob, [alice, alice]);
      expect(again.body.keyPackages.map((pkg) => pkg.keyPackageHash)).toEqual([
        fromBob.body.keyPackages[0]!.keyPackageHash,
      ]);
    }
    expect((await handedOut(alice)).map((row) => row.handed_out_to).sort()).toEqual([bob, carol].sort());
  });

  it("welcomes built from its packages earn a caller at most three of an owner's packages within the reservation", async () => {
    const alice = unique("did:plc:ralice");
    const mallory = unique("did:plc:rmallory");
    await publish(alice, 6);
    const welcome = encodeBase64((await makeGroupWithCommit()).welcomeBytes);
    for (let round = 0; round < 6; round++) {
      const fetched = await getKeyPackages(mallory, [alice]);
      const hash = fetched.body.keyPackages[0]?.keyPackageHash;
      if (!hash) break;
      const groupId = crypto.randomUUID().replace(/-/g, "");
      const created = await call(mallory, "createConvo", {
        body: {
          groupId,
          cipherSuite: SUITE,
          initialMembers: [alice],
          welcomeMessage: welcome,
          keyPackageHashes: [{ did: alice, hash }],
        },
      });
      expect(created.status).toBe(200);
    }
    expect(await handedOut(alice)).toEqual(Array(3).fill({ handed_out_to: mallory }));
  });
});
