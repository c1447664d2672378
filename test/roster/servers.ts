/**
 * Two real servers (src/entry/node.ts) on one PostgreSQL for the roster tests over real HTTP, and a roster-checked
 * conversation created through them, with the typed client (one attempt per call, every answer checked).
 */
import { afterAll, beforeAll } from "vitest";
import { start, stopAll, type BattleServer } from "../battle/server.js";
import { RosterGroup, SUITE, type Device } from "../helpers/rosterGroup.js";
import { Api, ok } from "../messaging/client.js";

/**
 * Starts two servers before the file's tests and stops them after; answers `server(i)`, the typed client of server
 * i mod 2 (30 s per call).
 */
export function twoServers(): (i: number) => Api {
  let servers: BattleServer[] = [];
  let clients: Api[] = [];
  beforeAll(async () => {
    servers = await Promise.all([start({ DATABASE_POOL_MAX: "20" }), start({ DATABASE_POOL_MAX: "20" })]);
    clients = servers.map((server) => new Api(server.url, { retry: { deadlineMs: 30_000 } }));
  });
  afterAll(() => stopAll(servers));
  return (i) => clients[i % clients.length]!;
}

/**
 * A group made by `creator` holding `others` (one commit, applied; their key packages published through `client`)
 * and its roster-checked conversation created over HTTP from that GroupInfo.
 */
export async function httpRosterConvo(
  client: Api,
  creator: Device,
  others: Device[],
): Promise<{ group: RosterGroup; convoId: string }> {
  const group = await RosterGroup.create(creator, {
    publish: async ({ did }, keyPackage) => {
      const expires = new Date(Date.now() + 86_400_000).toISOString();
      await ok(client.as(did).publishKeyPackage({ keyPackage, cipherSuite: SUITE, expires }));
    },
  });
  const bundle = await group.commit(creator, { add: others });
  await bundle.apply();
  const created = await ok(
    client.as(creator.did).createConvo({
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      deviceId: creator.deviceId,
      groupInfo: await group.groupInfo(creator),
      welcomeMessage: bundle.welcome!,
      keyPackageHashes: bundle.keyPackageHashes,
    }),
  );
  return { group, convoId: created.data.id };
}
