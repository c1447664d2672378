/**
 * The writes of the devices work wake the streams of the conversations they change, here and on other instances:
 * a commit bundle (processCommit) and a revocation (revokeDevice, in every conversation whose roster holds the
 * device). Polls are pushed past any test's length, so only a wake-up can deliver: a missing one hangs the test.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { testDatabase } from "../helpers/context.js";
import { RosterGroup, SUITE, type Bundle, type Device } from "../helpers/rosterGroup.js";
import { bundleInput, device, newDid, register } from "../roster/fixtures.js";
import { clientOn, SERVER_SECRET, startServer, type Server } from "./servers.js";
import { openStream } from "./sseClient.js";

const WAKE_ONLY = { EVENTS_POLL_MS: "600000", EVENTS_SAFETY_POLL_MS: "600000", EVENTS_KEEPALIVE_MS: "600000" };

let a: Server | undefined;
let b: Server | undefined;
let db: Database;
const registered = new Set<string>();

beforeAll(async () => {
  db = testDatabase(2);
  [a, b] = await Promise.all([startServer(WAKE_ONLY), startServer(WAKE_ONLY)]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await db?.close();
});

/** Alice's roster-checked conversation (her phone) with Bob's phone and laptop, made through server b. */
async function rosterConversation(bob = newDid("bob")) {
  const alice = newDid("alice");
  const devices: Device[] = [device(alice, "phone"), device(bob, "phone"), device(bob, "laptop")];
  await register(db, ...devices.filter(({ did }) => did === alice || !registered.has(did)));
  registered.add(bob);
  const expires = () => new Date(Date.now() + 86_400_000).toISOString();
  const group = await RosterGroup.create(devices[0]!, {
    publish: async ({ did }, keyPackage) =>
      void expect(
        (await clientOn(b!, did).publishKeyPackage({ keyPackage, cipherSuite: SUITE, expires: expires() })).status,
      ).toBe(200),
  });
  const bundle = await group.commit(devices[0]!, { add: devices.slice(1) });
  await bundle.apply();
  const { status, data: created } = await clientOn(b!, alice).createConvo({
    groupId: group.groupIdHex,
    cipherSuite: SUITE,
    deviceId: "phone",
    groupInfo: await group.groupInfo(devices[0]!),
    welcomeMessage: bundle.welcome!,
    keyPackageHashes: bundle.keyPackageHashes,
  });
  expect(status).toBe(200);
  return { alice, bob, group, convoId: created.id };
}

describe("streams wake for the devices work's writes", () => {
  it("a commit bundle reaches a stream held on this instance and on another one", async () => {
    const { alice, bob, group, convoId } = await rosterConversation();
    const here = await openStream(b!.url, alice, { convoId }, SERVER_SECRET);
    const there = await openStream(a!.url, bob, { convoId }, SERVER_SECRET);
    const alicePhone = device(alice, "phone");
    const removal = await group.commit(alicePhone, { remove: [device(bob, "laptop")] });
    expect((await clientOn(b!, alice).processCommit(bundleInput(convoId, removal, alicePhone))).status).toBe(200);

    for (const stream of [here, there]) {
      const [commit, removed] = await stream.events!.take(2);
      expect(commit).toMatchObject({ event: "message", data: { messageType: "commit", senderDevice: "phone" } });
      expect(removed).toMatchObject({
        event: "membership",
        data: { type: "deviceRemoved", did: bob, deviceId: "laptop" },
      });
      await stream.close();
    }
  });

  it("a revocation reaches the streams of every conversation whose roster holds the device, here and elsewhere", async () => {
    const first = await rosterConversation();
    const { bob } = first;
    const second = await rosterConversation(bob);
    const streams = [
      await openStream(b!.url, first.alice, { convoId: first.convoId }, SERVER_SECRET),
      await openStream(a!.url, second.alice, { convoId: second.convoId }, SERVER_SECRET),
    ];
    expect((await clientOn(b!, bob).revokeDevice({ deviceId: "laptop" })).status).toBe(200);

    for (const stream of streams) {
      expect(await stream.events!.nextParsed()).toMatchObject({
        event: "membership",
        data: { type: "deviceRevoked", did: bob, deviceId: "laptop" },
      });
      await stream.close();
    }
  });
});
