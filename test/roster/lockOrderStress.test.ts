/**
 * Everything that locks devices, conversations, welcomes and key packages, at once, round after round, over real
 * HTTP against two real servers on one PostgreSQL: a member's commit adding a device, another member's commit racing
 * it, revoking the device the previous round added, publishing a last-resort package and renaming a device whose row
 * the commit holds, a send from a device, a key package claim and a welcome confirmation. No answer may be a 5xx
 * (a deadlock is a 503), and the roster stays the winner's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeMlsMessage } from "ts-mls/message.js";
import type { Database } from "../../src/db/driver.js";
import { start, stopAll, type BattleServer } from "../battle/server.js";
import { testDatabase, tokenFor } from "../helpers/context.js";
import { b64, RosterGroup, SUITE, type Bundle } from "../helpers/rosterGroup.js";
import { bundleBody, device, expectRosterOf, newDid, register } from "./fixtures.js";

let servers: BattleServer[] = [];
let db: Database;

beforeAll(async () => {
  db = testDatabase(4);
  servers = await Promise.all([start({ DATABASE_POOL_MAX: "20" }), start({ DATABASE_POOL_MAX: "20" })]);
});
afterAll(async () => {
  await stopAll(servers);
  await db?.close();
});

interface Answer {
  label: string;
  status: number;
  body: any;
}

async function call(i: number, label: string, did: string, method: string, body: unknown): Promise<Answer> {
  const response = await fetch(`${servers[i % servers.length]!.url}/xrpc/blue.catbird.mls.${method}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${await tokenFor(did)}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { label, status: response.status, body: await response.json() };
}

async function get(i: number, label: string, did: string, method: string, params: string): Promise<Answer> {
  const response = await fetch(`${servers[i % servers.length]!.url}/xrpc/blue.catbird.mls.${method}?${params}`, {
    headers: { Authorization: `Bearer ${await tokenFor(did)}` },
    signal: AbortSignal.timeout(30_000),
  });
  return { label, status: response.status, body: await response.json() };
}

const expires = () => new Date(Date.now() + 86_400_000).toISOString();

describe("the lock order under everything at once", () => {
  it("rival commits, revocations, publishing, renaming, sends, claims and confirmations: never a 5xx", async () => {
    const alice = newDid("alice");
    const bob = newDid("bob");
    const [alicePhone, aliceLaptop, bobPhone, bobLaptop] = [
      device(alice, "phone"),
      device(alice, "laptop"),
      device(bob, "phone"),
      device(bob, "laptop"),
    ];
    await register(db, alicePhone, aliceLaptop, bobPhone, bobLaptop);
    const group = await RosterGroup.create(alicePhone, {
      publish: async ({ did }, keyPackage) => {
        const answer = await call(0, "publish", did, "publishKeyPackage", {
          keyPackage: b64(keyPackage),
          cipherSuite: SUITE,
          expires: expires(),
        });
        expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      },
    });
    const first = await group.commit(alicePhone, { add: [aliceLaptop, bobPhone, bobLaptop] });
    await first.apply();
    const created = await call(0, "create", alice, "createConvo", {
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      deviceId: "phone",
      groupInfo: b64(await group.groupInfo(alicePhone)),
      welcomeMessage: b64(first.welcome!),
      keyPackageHashes: first.keyPackageHashes,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const convoId: string = created.body.id;

    let previous: string | undefined;
    for (let round = 0; round < 8; round++) {
      const added = device(bob, `v${round}`);
      await register(db, added);
      const commit = await group.commit(alicePhone, { add: [added] });
      const rival = await group.commit(bobPhone);
      const lastResort = await RosterGroup.keyPair(bobLaptop);
      const message = await group.application(aliceLaptop, `round ${round}`);
      const answers = await Promise.all([
        call(round, "commit", alice, "processCommit", bundleBody(convoId, commit, alicePhone)),
        call(round + 1, "rival", bob, "processCommit", bundleBody(convoId, rival, bobPhone)),
        ...(previous ? [call(round, "revoke", bob, "revokeDevice", { deviceId: previous })] : []),
        call(round + 1, "lastResort", bob, "publishKeyPackages", {
          keyPackages: [
            {
              keyPackage: b64(
                encodeMlsMessage({
                  version: "mls10",
                  wireformat: "mls_key_package",
                  keyPackage: lastResort.publicPackage,
                }),
              ),
              cipherSuite: SUITE,
              expires: expires(),
              lastResort: true,
            },
          ],
        }),
        call(round, "rename", bob, "registerDevice", { deviceId: "laptop", name: `laptop ${round}` }),
        call(round + 1, "send", alice, "sendMessage", {
          convoId,
          ciphertext: b64(message),
          epoch: group.epoch,
          deviceId: "laptop",
        }),
        get(round, "claim", alice, "getKeyPackages", `dids=${encodeURIComponent(bob)}`),
        ...(previous
          ? [call(round + 1, "confirm", bob, "confirmWelcome", { convoId, success: true, deviceId: previous })]
          : []),
      ]);
      for (const answer of answers) {
        expect(answer.status, `${answer.label}: ${JSON.stringify(answer.body)}`).toBeLessThan(500);
      }
      const [committed, rivalled] = answers as [Answer, Answer];
      expect([committed.status, rivalled.status].filter((status) => status === 200)).toHaveLength(1);
      const winner: Bundle = committed.status === 200 ? commit : rival;
      await winner.apply();
      await expectRosterOf(db, convoId, group);
      previous = committed.status === 200 ? added.deviceId : undefined;
    }
  });
});
