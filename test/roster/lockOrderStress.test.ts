/**
 * Everything that locks devices, conversations, welcomes and key packages, at once, round after round, over real
 * HTTP against two real servers on one PostgreSQL: a member's commit adding a device, another member's commit racing
 * it, revoking the device the previous round added, publishing a last-resort package and renaming a device whose row
 * the commit holds, a send from a device, a key package claim and a welcome confirmation. No answer may be a 5xx
 * (a deadlock is a 503), and the roster stays the winner's.
 */
import { afterAll, describe, expect, it } from "vitest";
import { encodeMlsMessage } from "ts-mls/message.js";
import { testDatabase } from "../helpers/context.js";
import { RosterGroup, SUITE, type Bundle } from "../helpers/rosterGroup.js";
import type { Outcome } from "../messaging/client.js";
import { bundleInput, device, expectRosterOf, newDid, register } from "./fixtures.js";
import { httpRosterConvo, twoServers } from "./servers.js";

const db = testDatabase(4);
afterAll(() => db.close());
const server = twoServers();

/** An answer with what it answered, for failure messages. */
const labelled = async (label: string, reply: Promise<Outcome<unknown>>) => ({ label, ...(await reply) });

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
    const { group, convoId } = await httpRosterConvo(server(0), alicePhone, [aliceLaptop, bobPhone, bobLaptop]);

    let previous: string | undefined;
    for (let round = 0; round < 8; round++) {
      const added = device(bob, `v${round}`);
      await register(db, added);
      const commit = await group.commit(alicePhone, { add: [added] });
      const rival = await group.commit(bobPhone);
      const lastResort = await RosterGroup.keyPair(bobLaptop);
      const message = await group.application(aliceLaptop, `round ${round}`);
      const answers = await Promise.all([
        labelled("commit", server(round).call(alice, "processCommit", bundleInput(convoId, commit, alicePhone))),
        labelled("rival", server(round + 1).call(bob, "processCommit", bundleInput(convoId, rival, bobPhone))),
        ...(previous ? [labelled("revoke", server(round).call(bob, "revokeDevice", { deviceId: previous }))] : []),
        labelled(
          "lastResort",
          server(round + 1).call(bob, "publishKeyPackages", {
            keyPackages: [
              {
                keyPackage: encodeMlsMessage({
                  version: "mls10",
                  wireformat: "mls_key_package",
                  keyPackage: lastResort.publicPackage,
                }),
                cipherSuite: SUITE,
                expires: expires(),
                lastResort: true,
              },
            ],
          }),
        ),
        labelled("rename", server(round).call(bob, "registerDevice", { deviceId: "laptop", name: `laptop ${round}` })),
        labelled(
          "send",
          server(round + 1).call(alice, "sendMessage", {
            convoId,
            ciphertext: message,
            epoch: group.epoch,
            deviceId: "laptop",
          }),
        ),
        labelled("claim", server(round).call(alice, "getKeyPackages", { dids: [bob] })),
        ...(previous
          ? [
              labelled(
                "confirm",
                server(round + 1).call(bob, "confirmWelcome", { convoId, success: true, deviceId: previous }),
              ),
            ]
          : []),
      ]);
      for (const answer of answers) {
        expect(answer.status, `${answer.label}: ${JSON.stringify(answer)}`).toBeLessThan(500);
      }
      const [committed, rivalled] = answers;
      expect([committed.status, rivalled.status].filter((status) => status === 200)).toHaveLength(1);
      const winner: Bundle = committed.status === 200 ? commit : rival;
      await winner.apply();
      await expectRosterOf(db, convoId, group);
      previous = committed.status === 200 ? added.deviceId : undefined;
    }
  });
});
