/**
 * A device stream opened while its device is being revoked: the revocation's `deviceRevoked` event is the last
 * one such a stream may send. A stream that starts at the newest event must never start past that event with the
 * device's check made before it (it would then send everything that follows, to a revoked device).
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, tokenFor } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import type { Device } from "../helpers/rosterGroup.js";
import { clientFor } from "../helpers/client.js";
import { Xrpc } from "../messaging/client.js";
import { device, newDid, register, rosterConvo } from "../roster/fixtures.js";
import { opened } from "./sseClient.js";

const db = testDatabase();
afterAll(() => db.close());

describe("a device stream opened while the device is revoked", () => {
  it("is refused, or ends at the revocation: it never sends what follows it", async () => {
    // The revocation commits right before the statement that reads where the stream starts.
    let revokeBeforeHead: (() => Promise<void>) | undefined;
    const hooked = withStatementHook(db, async (sql) => {
      if (!revokeBeforeHead || !sql.includes("AS expired")) return;
      const revoke = revokeBeforeHead;
      revokeBeforeHead = undefined;
      await revoke();
    });
    const { app } = testApp(hooked, { EVENTS_POLL_MS: "100", EVENTS_KEEPALIVE_MS: "600000" });
    const revoke = async (did: string, deviceId: string) =>
      expect((await clientFor(app, did).revokeDevice({ deviceId })).status).toBe(200);

    const alice = newDid("alice");
    const bob = newDid("bob");
    const devices: Device[] = [device(alice, "phone"), device(bob, "phone"), device(bob, "laptop")];
    await register(db, ...devices);
    // rosterConvo (test/roster/fixtures.ts) takes the messaging tests' client.
    const { convoId } = await rosterConvo(new Xrpc(app), devices[0]!, devices.slice(1));

    revokeBeforeHead = () => revoke(bob, "laptop");
    const response = await app.request(
      `/xrpc/blue.catbird.mls.streamConvoEvents?${new URLSearchParams({ convoId, deviceId: "laptop" })}`,
      { headers: { Authorization: `Bearer ${await tokenFor(bob)}` } },
    );
    expect(revokeBeforeHead).toBeUndefined();
    const stream = await opened(response);
    try {
      // Something that happens after the revocation: Bob's phone is revoked too.
      await revoke(bob, "phone");
      if (stream.status === 200) {
        const next = await Promise.race([
          stream.events!.nextParsed(),
          new Promise((resolve) => setTimeout(() => resolve("nothing"), 1500)),
        ]);
        expect(next, "a revoked device's stream sent an event after its revocation").toBeUndefined();
      } else {
        expect(stream.status).toBe(403);
      }
    } finally {
      await stream.close();
    }
  });
});
