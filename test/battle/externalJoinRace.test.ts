/**
 * Battle: external joins racing a member's commit for one epoch, with real ts-mls clients over real HTTP to two
 * real server processes on one real PostgreSQL database. New devices of member DIDs all build their external
 * commit from the same GroupInfo while a member commits; exactly one wins the epoch, every other gets 409
 * EpochMismatch, the stored roster is the winner's, and everyone converges: the losers retry (racing again, one
 * winner a round) until all are in, and then every device decrypts every other device's message.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testDatabase } from "../helpers/context.js";
import {
  MlsDevice,
  readGroupInfo,
  rosterNames,
  XrpcFailure,
  type CommitResult,
  type PreparedCommit,
} from "../helpers/mlsDevice.js";
import { enterDevicesBattle } from "../devices/fixtures.js";
import { battleReport } from "./report.js";
import { start, stopAll, type BattleServer } from "./server.js";

const db = testDatabase(4);
let servers: BattleServer[] = [];

beforeAll(async () => {
  const started = await Promise.allSettled([start(), start()]);
  servers = started.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
  for (const outcome of started) if (outcome.status === "rejected") throw outcome.reason;
});

afterAll(async () => {
  await stopAll(servers);
  await db.close();
});

const lost = (n: number) =>
  n === 0 ? "no rival left" : n === 1 ? "1 other gets 409 EpochMismatch" : `${n} others get 409 EpochMismatch`;

/** A racer: what it sends, and who it is, for the report. */
interface Racer {
  name: string;
  send: () => Promise<CommitResult>;
}

/** Each trial is a fresh conversation and a fresh race: which racer wins is up to the servers. */
const TRIALS = 3;

describe("battle: external joins racing a member's commit", () => {
  it.for(Array.from({ length: TRIALS }, (_, i) => i + 1))(
    "trial %i: one epoch, one winner; the roster is the winner's; everyone converges and talks",
    async (trial) => {
      const report = battleReport(
        `External Joins Racing a Member's Commit (one epoch, two servers), trial ${trial}/${TRIALS}`,
      );
      report.onFailure(() => servers.map((server) => server.output()).join("\n"));
      const battle = await enterDevicesBattle(db, "xjoin");
      const [alice, bob, carol] = ["alice", "bob", "carol"].map((name) => battle.did(name)) as [string, string, string];
      const names = { [alice]: "alice", [bob]: "bob", [carol]: "carol" };
      let turn = 0;
      // Devices alternate between the two servers.
      const device = async (did: string, deviceId: string) => {
        const created = await MlsDevice.create(servers[turn++ % 2]!.url, did, deviceId, `${names[did]}/${deviceId}`);
        await created.register(deviceId);
        return created;
      };

      // The group before the race: alice/phone, bob/phone, carol/phone at epoch 1.
      const alicePhone = await device(alice, "phone");
      const bobPhone = await device(bob, "phone");
      const carolPhone = await device(carol, "phone");
      await bobPhone.publishKeyPackages(1);
      await carolPhone.publishKeyPackages(1);
      const convoId = await alicePhone.createConvo({ name: `${battle.prefix}-convo` });
      const claimed = [...(await alicePhone.claimKeyPackages(bob)), ...(await alicePhone.claimKeyPackages(carol))];
      await alicePhone.commit(convoId, { add: claimed });
      await bobPhone.joinFromWelcome(convoId);
      await carolPhone.joinFromWelcome(convoId);
      const members = [alicePhone, bobPhone, carolPhone];
      report.log(`alice/phone adds bob/phone+carol/phone → epoch 1 (${convoId})`);

      // New devices of the member DIDs, each with an external commit built from the same GroupInfo of epoch 1.
      const joiners = [
        await device(bob, "laptop"),
        await device(bob, "tablet"),
        await device(bob, "watch"),
        await device(carol, "laptop"),
        await device(carol, "tablet"),
      ];
      const bundles = new Map<MlsDevice, PreparedCommit>();
      for (const joiner of joiners) bundles.set(joiner, await joiner.prepareExternalJoin(convoId));
      // Even trials frame the member commit as a PublicMessage (the server verifies those), odd ones as a PrivateMessage.
      const memberCommit = await alicePhone.prepareCommit(convoId, { publicMessage: trial % 2 === 0 });
      expect([...bundles.values(), memberCommit].map((bundle) => bundle.epoch)).toEqual(
        Array(joiners.length + 1).fill(1),
      );

      const racers: Racer[] = [
        ...joiners.map((joiner) => ({
          name: joiner.name,
          send: () => joiner.sendExternalJoin(convoId, bundles.get(joiner)!),
        })),
        { name: "alice/phone (member commit)", send: () => alicePhone.sendCommit(convoId, memberCommit) },
      ];
      report.log(`${racers.length} racers for epoch 1: ${racers.map((racer) => racer.name).join(", ")}`);
      const winner = await race(racers);
      report.log(`round 1: ${winner.name} wins epoch 1; ${lost(racers.length - 1)}`);

      const inGroup = [...members];
      const winningJoiner = joiners.find((joiner) => winner.name === joiner.name);
      if (winningJoiner) inGroup.push(winningJoiner);
      await converge(2);

      // The losing joiners retry from the latest GroupInfo, racing each other again: one winner a round.
      let waiting = joiners.filter((joiner) => joiner !== winningJoiner);
      for (let round = 2; waiting.length > 0; round++) {
        const epoch = inGroup[0]!.epoch(convoId);
        for (const joiner of waiting) bundles.set(joiner, await joiner.prepareExternalJoin(convoId));
        const next = await race(
          waiting.map((joiner) => ({
            name: joiner.name,
            send: () => joiner.sendExternalJoin(convoId, bundles.get(joiner)!),
          })),
        );
        report.log(`round ${round}: ${next.name} wins epoch ${epoch}; ${lost(waiting.length - 1)}`);
        const joined = waiting.find((joiner) => joiner.name === next.name)!;
        inGroup.push(joined);
        waiting = waiting.filter((joiner) => joiner !== joined);
        await converge(epoch + 1);
      }

      // Every device sends one message; every device decrypts every other one.
      for (const sender of inGroup) await sender.send(convoId, `hello from ${sender.name}`);
      for (const reader of inGroup) {
        const got = (await reader.catchUp(convoId)).map((message) => message.text);
        expect(got, `${reader.name} decrypts`).toEqual(
          inGroup.filter((other) => other !== reader).map((other) => `hello from ${other.name}`),
        );
      }
      report.log(`${inGroup.length} devices each decrypt the ${inGroup.length - 1} messages of the others`);

      const [perEpoch] = await db.query<{ epochs: number; commits: number }>(
        `SELECT count(DISTINCT epoch)::int AS epochs, count(*)::int AS commits FROM messages WHERE convo_id = $1 AND message_type = 'commit'`,
        [convoId],
      );
      const finalEpoch = inGroup[0]!.epoch(convoId);
      expect(perEpoch, "one commit per epoch, none lost").toEqual({ epochs: finalEpoch, commits: finalEpoch });
      report.pass(
        `one commit per epoch (${perEpoch!.commits} epochs), the stored roster matched every winner, all states converged`,
      );

      /** Fires every racer at once: exactly one succeeds, every other gets 409 EpochMismatch. */
      async function race(entrants: Racer[]): Promise<Racer> {
        const outcomes = await Promise.allSettled(entrants.map((racer) => racer.send()));
        const winners = entrants.filter((_, i) => outcomes[i]!.status === "fulfilled");
        const refusals = outcomes.flatMap((outcome) =>
          outcome.status === "rejected"
            ? [
                outcome.reason instanceof XrpcFailure
                  ? `${outcome.reason.status} ${outcome.reason.error}`
                  : String(outcome.reason),
              ]
            : [],
        );
        expect(
          winners.map((racer) => racer.name),
          `exactly one winner (refusals: ${refusals.join("; ")})`,
        ).toHaveLength(1);
        expect(refusals).toEqual(Array(entrants.length - 1).fill("409 EpochMismatch"));
        return winners[0]!;
      }

      /**
       * Every device in the group catches up to `epoch`; the stored GroupInfo (as a client checks it), the roster
       * table and every device's own tree agree on the roster, and all states share one tree hash.
       */
      async function converge(epoch: number) {
        for (const member of inGroup) {
          await member.catchUp(convoId);
          expect(member.epoch(convoId), `${member.name}'s epoch`).toBe(epoch);
        }
        const expected = inGroup.map((member) => member.name).sort();
        const stored = await alicePhone.getGroupInfo(convoId);
        const read = await readGroupInfo(stored.groupInfo);
        expect([stored.epoch, read.epoch]).toEqual([epoch, epoch]);
        expect(rosterNames(read.roster, names)).toEqual(expected);
        const rows = await db.query<{ did: string; device_id: string; leaf_index: number }>(
          `SELECT did, device_id, leaf_index FROM roster WHERE convo_id = $1 ORDER BY leaf_index`,
          [convoId],
        );
        expect(
          rows.map((row) => ({ leafIndex: Number(row.leaf_index), identity: `${row.did}#${row.device_id}` })),
        ).toEqual(read.roster.map(({ leafIndex, identity }) => ({ leafIndex, identity })));
        const treeHashes = new Set(
          inGroup.map((member) => Buffer.from(member.state(convoId).groupContext.treeHash).toString("hex")),
        );
        expect(treeHashes.size, "one tree hash across all devices").toBe(1);
        for (const member of inGroup) expect(rosterNames(member.roster(convoId), names)).toEqual(expected);
        report.log(`  converged at epoch ${epoch}: ${expected.join(", ")}`);
      }
    },
  );
});
