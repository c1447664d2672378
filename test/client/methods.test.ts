/**
 * Every XRPC method through the typed client, over HTTP against the real server process on real PostgreSQL: inputs
 * and answers with bytes as Uint8Array, a roster-checked conversation with devices and commit bundles, paging and
 * the event stream.
 */
import type { Client } from "mls-delivery-service/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { methods } from "../../src/api/index.js";
import { KINDS } from "../../src/client/methods.js";
import { start, type BattleServer } from "../battle/server.js";
import { randomGroupId, testApp, testDatabase } from "../helpers/context.js";
import { makeKeyPackage } from "../helpers/mls.js";
import { RosterGroup, type Device } from "../helpers/rosterGroup.js";
import { clientFor, countingFetch, newDid, SUITE, tomorrow } from "./fixtures.js";

let server: BattleServer;
beforeAll(async () => void (server = await start()));
afterAll(() => server?.stop());

describe("the typed client", () => {
  it("has a method of the same kind for each of the server's", () => {
    const client = { ...KINDS, streamConvoEvents: "query" };
    expect(Object.entries(client).sort()).toEqual(methods.map((method) => [method.name, method.type]).sort());
  });

  it("calls every method with typed inputs and answers", async () => {
    const [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(newDid) as [string, string, string, string];
    const counter = countingFetch();
    const [a, b, c, d] = [alice, bob, carol, dave].map((did) =>
      clientFor(server.url, did, { fetch: counter.fetch }),
    ) as [Client, Client, Client, Client];
    const clients = new Map([alice, bob, carol, dave].map((did, i) => [did, [a, b, c, d][i]!]));
    const phone = (did: string): Device => ({ did, deviceId: "phone" });

    // Devices.
    expect((await a.registerDevice({ deviceId: "phone", name: "Alice's phone" })).data).toEqual({
      deviceId: "phone",
      credentialIdentity: `${alice}#phone`,
    });
    await b.registerDevice({ deviceId: "phone" });
    await c.registerDevice({ deviceId: "phone" });
    const devices = (await a.getDevices()).data.devices;
    expect(devices.map((device) => [device.deviceId, device.name, device.revoked])).toEqual([
      ["phone", "Alice's phone", false],
    ]);

    // A roster-checked conversation: Alice's phone and Bob's phone, key packages published through the client.
    const group = await RosterGroup.create(phone(alice), {
      publish: async (device, keyPackage) => {
        const answer = await clients
          .get(device.did)!
          .publishKeyPackage({ keyPackage, cipherSuite: SUITE, expires: tomorrow() });
        expect(answer.data).toEqual({ success: true });
      },
    });
    const joinBob = await group.commit(phone(alice), { add: [phone(bob)] });
    await joinBob.apply();
    const convo = (
      await a.createConvo({
        groupId: group.groupIdHex,
        cipherSuite: SUITE,
        groupInfo: await group.groupInfo(phone(alice)),
        deviceId: "phone",
        welcomeMessage: joinBob.welcome,
        keyPackageHashes: joinBob.keyPackageHashes,
        metadata: { name: "client test" },
      })
    ).data;
    expect(convo).toMatchObject({
      groupId: group.groupIdHex,
      creator: alice,
      epoch: 1,
      metadata: { name: "client test" },
    });
    const convoId = convo.id;
    expect((await a.getConvos()).data.conversations.map((view) => view.id)).toContain(convoId);
    expect((await b.getEpoch({ convoId })).data).toEqual({ convoId, currentEpoch: 1 });
    const info = (await b.getGroupInfo({ convoId })).data;
    expect(info.epoch).toBe(1);
    expect(info.groupInfo).toEqual(await group.groupInfo(phone(alice)));

    // Bob joins from his welcome: fetched, processed, confirmed.
    const welcome = await b.acceptWelcome({ convoId, deviceId: "phone" }, (bytes) => bytes);
    expect(welcome).toEqual(joinBob.welcome);

    // A message, a commit bundle adding Carol's phone, the commits and messages read back.
    const ciphertext = await group.application(phone(alice), "hello bob");
    const sent = await a.sendMessage({ convoId, ciphertext, epoch: 1, deviceId: "phone" });
    expect(sent.data).toMatchObject({ seq: 1, epoch: 1 });
    expect(sent.replayed).toBe(false);
    expect(sent.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);

    const joinCarol = await group.commit(phone(alice), { add: [phone(carol)] });
    const outcome = await a.processCommit({
      convoId,
      epoch: joinCarol.epoch,
      commit: joinCarol.commit,
      groupInfo: joinCarol.groupInfo,
      welcomeMessage: joinCarol.welcome,
      keyPackageHashes: joinCarol.keyPackageHashes,
      deviceId: "phone",
    });
    expect(outcome.data).toMatchObject({
      newEpoch: 2,
      seq: 2,
      added: [{ did: carol, deviceId: "phone" }],
      removed: [],
    });
    await joinCarol.apply();
    const commits = (await b.getCommits({ convoId, fromEpoch: 1 })).data.commits;
    expect(commits.map((commit) => [commit.epoch, commit.ciphertext])).toEqual([[1, joinCarol.commit]]);

    const page = (await b.getMessages({ convoId, limit: 1 })).data;
    expect(page.messages.map((message) => message.ciphertext)).toEqual([ciphertext]);
    expect(page.cursor).toBe("1");
    for (const text of ["two", "three", "four"]) {
      await a.sendMessage({
        convoId,
        ciphertext: await group.application(phone(alice), text),
        epoch: 2,
        deviceId: "phone",
      });
    }
    const all = [];
    for await (const message of b.allMessages({ convoId, limit: 2 })) all.push(message);
    expect(all.map((message) => [message.seq, message.messageType])).toEqual([
      [1, "app"],
      [2, "commit"],
      [3, "app"],
      [4, "app"],
      [5, "app"],
    ]);
    expect((await b.updateCursor({ convoId, cursor: "5", deviceId: "phone" })).data).toEqual({ success: true });

    // The event stream from the start: Bob sees what he was there for, then stops when he likes.
    const stop = new AbortController();
    const seen = [];
    for await (const event of b.streamConvoEvents({ convoId, cursor: 0, deviceId: "phone" }, stop.signal)) {
      seen.push(event);
      if (event.type === "message" && event.data.seq === 5) stop.abort();
    }
    const messages = seen.flatMap((event) => (event.type === "message" ? [event.data] : []));
    expect(messages.map((message) => message.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(messages[0]!.ciphertext).toEqual(ciphertext);
    expect(seen.some((event) => event.type === "membership" && event.data.did === carol)).toBe(true);

    // Key packages of an implicit device: published in bulk, counted, handed out once.
    const packages = [await makeKeyPackage(dave), await makeKeyPackage(dave)];
    const published = await d.publishKeyPackages({
      keyPackages: packages.map((keyPackage) => ({ keyPackage, cipherSuite: SUITE, expires: tomorrow() })),
    });
    expect(published.data).toEqual({ published: 2, duplicates: 0 });
    expect((await d.getKeyPackageStats({ cipherSuite: SUITE })).data).toMatchObject({ available: 2 });
    const claimed = (await a.getKeyPackages({ dids: [dave], cipherSuite: SUITE })).data;
    expect(claimed.missing).toEqual([]);
    expect(claimed.keyPackages).toHaveLength(1);
    expect(packages).toContainEqual(claimed.keyPackages[0]!.keyPackage);

    // A conversation without a roster: Dave added and leaving.
    const plain = (await a.createConvo({ groupId: randomGroupId(), cipherSuite: SUITE })).data;
    expect((await a.addMembers({ convoId: plain.id, didList: [dave] })).data).toEqual({ success: true, newEpoch: 0 });
    expect((await d.leaveConvo({ convoId: plain.id })).data).toEqual({ success: true, newEpoch: 0 });

    // Carol revokes her phone; Bob's welcome is gone once confirmed.
    expect((await c.revokeDevice({ deviceId: "phone" })).data).toEqual({ revoked: true });
    expect((await c.getDevices()).data.devices[0]!.revoked).toBe(true);
    expect((await b.confirmWelcome({ convoId, success: true, deviceId: "phone" })).data).toEqual({ confirmed: true });
    expect(new Set(counter.sent)).toEqual(new Set(methods.map((method) => method.name)));
  });

  it("works in-process too, over an app's fetch (no server, no port)", async () => {
    const db = testDatabase(2);
    try {
      const { app } = testApp(db);
      const alice = newDid("alice");
      const client = clientFor(app, alice);
      const convo = (await client.createConvo({ groupId: randomGroupId(), cipherSuite: SUITE })).data;
      const ciphertext = new TextEncoder().encode("in process");
      const options = { idempotencyKey: crypto.randomUUID() };
      const sent = await client.sendMessage({ convoId: convo.id, ciphertext, epoch: 0 }, options);
      const again = await client.sendMessage({ convoId: convo.id, ciphertext, epoch: 0 }, options);
      expect([sent.replayed, again.replayed, again.data]).toEqual([false, true, sent.data]);
      expect((await client.getMessages({ convoId: convo.id })).data.messages.map((m) => m.ciphertext)).toEqual([
        ciphertext,
      ]);
    } finally {
      await db.close();
    }
  });
});
