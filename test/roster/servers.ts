/**
 * Two real servers (src/entry/node.ts) on one PostgreSQL for the roster tests over real HTTP, and a roster-checked
 * conversation created through them.
 */
import { afterAll, beforeAll, expect } from "vitest";
import { BattleClient } from "../battle/client.js";
import { start, stopAll, type BattleServer } from "../battle/server.js";
import { b64, RosterGroup, SUITE, type Device } from "../helpers/rosterGroup.js";

/**
 * Starts two servers before the file's tests and stops them after; answers `server(i)`, the client of server
 * i mod 2 (30 s per call).
 */
export function twoServers(): (i: number) => BattleClient {
  let servers: BattleServer[] = [];
  let clients: BattleClient[] = [];
  beforeAll(async () => {
    servers = await Promise.all([start({ DATABASE_POOL_MAX: "20" }), start({ DATABASE_POOL_MAX: "20" })]);
    clients = servers.map((server) => new BattleClient(server.url, 30_000));
  });
  afterAll(() => stopAll(servers));
  return (i) => clients[i % clients.length]!;
}

/**
 * A group made by `creator` holding `others` (one commit, applied; their key packages published through `client`)
 * and its roster-checked conversation created over HTTP from that GroupInfo.
 */
export async function httpRosterConvo(
  client: BattleClient,
  creator: Device,
  others: Device[],
): Promise<{ group: RosterGroup; convoId: string }> {
  const group = await RosterGroup.create(creator, {
    publish: async ({ did }, keyPackage) => {
      const expires = new Date(Date.now() + 86_400_000).toISOString();
      const answer = await client.post(did, "publishKeyPackage", {
        keyPackage: b64(keyPackage),
        cipherSuite: SUITE,
        expires,
      });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    },
  });
  const bundle = await group.commit(creator, { add: others });
  await bundle.apply();
  const created = await client.post(creator.did, "createConvo", {
    groupId: group.groupIdHex,
    cipherSuite: SUITE,
    deviceId: creator.deviceId,
    groupInfo: b64(await group.groupInfo(creator)),
    welcomeMessage: b64(bundle.welcome!),
    keyPackageHashes: bundle.keyPackageHashes,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  return { group, convoId: created.body.id as string };
}
