/**
 * Key packages published before migration 0012 (by an old server, which stored no signature key) on a database
 * upgraded in place: once cleanup has run, they vouch for the leaves made from them like packages published today,
 * so an old client's user can be added to a roster-checked conversation with the packages it already has.
 */
import { afterAll, expect, it } from "vitest";
import { encodeMlsMessage } from "ts-mls/message.js";
import { sha256Hex } from "../../src/bytes.js";
import { migrate } from "../../src/db/migrate.js";
import { readMigrations } from "../../src/db/migrations-fs.js";
import { runCleanup } from "../../src/jobs/cleanup.js";
import { testApp } from "../helpers/context.js";
import { RosterGroup, SUITE, type Device } from "../helpers/rosterGroup.js";
import { holdRowLock } from "../helpers/rowLock.js";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";
import { Api, ok } from "../messaging/client.js";
import { bundleInput, device, newDid, publisher } from "../roster/fixtures.js";

let schema: SchemaBefore | undefined;
afterAll(() => schema?.drop());

const DAY = 86_400_000;
const packageBytes = (keys: Awaited<ReturnType<typeof RosterGroup.keyPair>>) =>
  encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: keys.publicPackage });

it("a package stored before 0012 gets its signature key from cleanup and vouches for the leaf made from it; one whose signatures do not verify goes", async () => {
  schema = await schemaBefore("0012_key_package_signature_keys.sql");
  const { db } = schema;
  const alice = device(newDid("alice"));
  const bob = device(newDid("bob"));
  const now = new Date();

  // Bob's old client (the implicit device) published two packages through the old server: one good, and one whose
  // signature was mangled (the old server did not verify signatures).
  const bobKeys = await RosterGroup.keyPair(bob);
  const good = packageBytes(bobKeys);
  const mangled = packageBytes(await RosterGroup.keyPair(bob));
  mangled[mangled.length - 1]! ^= 0x01;
  const storeOld = (bytes: Uint8Array, createdAt: Date) =>
    db.query(
      `INSERT INTO key_packages (owner_did, cipher_suite, key_package, hash, expires_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [bob.did, SUITE, bytes, sha256Hex(bytes), new Date(now.getTime() + DAY), createdAt],
    );
  await storeOld(good, new Date(now.getTime() - 2 * DAY));
  await storeOld(mangled, new Date(now.getTime() - DAY));

  await migrate(db, await readMigrations());
  const cleanup = await runCleanup(db, {
    now,
    welcomeGraceSeconds: 300,
    welcomeTtlSeconds: 7 * 86_400,
    retentionDays: 30,
  });
  expect(cleanup).toMatchObject({ ran: true, keyPackageKeys: 2 });
  const stored = await db.query<{ hash: string; signature_key: Uint8Array | null }>(
    `SELECT hash, signature_key FROM key_packages WHERE owner_did = $1`,
    [bob.did],
  );
  expect(stored.map(({ hash, signature_key }) => [hash, signature_key && Buffer.from(signature_key)])).toEqual([
    [sha256Hex(good), Buffer.from(bobKeys.publicPackage.leafNode.signaturePublicKey)],
  ]);

  // Alice, a new client, makes a roster-checked conversation and adds Bob with the package the server hands out.
  const api = new Api(testApp(db).app);
  const publishOwn = publisher(api);
  const group = await RosterGroup.create(alice, {
    publish: (owner: Device, bytes: Uint8Array) =>
      owner.did === alice.did ? publishOwn(owner, bytes) : Promise.resolve(),
  });
  const created = await ok(
    api.as(alice.did).createConvo({
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      groupInfo: await group.groupInfo(alice),
    }),
  );
  const handed = await ok(api.as(alice.did).getKeyPackages({ dids: [bob.did] }));
  expect(handed.data.keyPackages.map((pkg) => pkg.keyPackageHash)).toEqual([sha256Hex(good)]);

  const bundle = await group.commit(alice, { extraKeyPackages: [{ device: bob, keys: bobKeys }] });
  const added = await ok(api.as(alice.did).processCommit(bundleInput(created.data.id, bundle, alice)));
  expect(added.data.added).toEqual([bob]);
});

it("keys old packages a batch at a time and skips, without waiting, one a live request holds", async () => {
  const { db } = schema!;
  const carol = device(newDid("carol"));
  const now = new Date();
  const hashes: string[] = [];
  for (let i = 0; i < 3; i++) {
    const bytes = packageBytes(await RosterGroup.keyPair(carol));
    hashes.push(sha256Hex(bytes));
    await db.query(
      `INSERT INTO key_packages (owner_did, cipher_suite, key_package, hash, expires_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $5)`,
      [carol.did, SUITE, bytes, sha256Hex(bytes), new Date(now.getTime() + DAY)],
    );
  }
  const lock = holdRowLock(db, `SELECT id FROM key_packages WHERE hash = $1 FOR UPDATE`, [hashes[1]]);
  await lock.held;
  const options = { now, welcomeGraceSeconds: 300, welcomeTtlSeconds: 7 * 86_400, retentionDays: 30, batchSize: 1 };
  try {
    expect(await runCleanup(db, options)).toMatchObject({ ran: true, keyPackageKeys: 2 });
  } finally {
    lock.release();
    await lock.done;
  }
  const unkeyed = async () =>
    (
      await db.query<{ hash: string }>(`SELECT hash FROM key_packages WHERE owner_did = $1 AND signature_key IS NULL`, [
        carol.did,
      ])
    ).map((row) => row.hash);
  expect(await unkeyed()).toEqual([hashes[1]]);
  expect(await runCleanup(db, options)).toMatchObject({ ran: true, keyPackageKeys: 1 });
  expect(await unkeyed()).toEqual([]);
});
