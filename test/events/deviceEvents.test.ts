/**
 * Commit bundles and revocations wake the streams of the conversations they change, like every other write: with
 * polling far away (EVENTS_POLL_MS, EVENTS_SAFETY_POLL_MS: a minute), an open stream gets the events at once.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase } from "../helpers/context.js";
import { Xrpc } from "../messaging/client.js";
import { commitBundle, device, newDid, register, rosterConvo } from "../roster/fixtures.js";
import { stream } from "./convo.js";

const db = testDatabase();
afterAll(() => db.close());
const { app } = testApp(db, { EVENTS_POLL_MS: "60000", EVENTS_SAFETY_POLL_MS: "60000" });
const api = new Xrpc(app);

describe("device events wake streams", () => {
  it("processCommit's and revokeDevice's events reach an open stream without polling", async () => {
    const alicePhone = device(newDid("alice"), "phone");
    const bobPhone = device(newDid("bob"), "phone");
    const bobLaptop = device(bobPhone.did, "laptop");
    await register(db, alicePhone, bobPhone, bobLaptop);
    const { group, convoId } = await rosterConvo(api, alicePhone, [bobPhone]);
    const alices = await stream(app, alicePhone.did, { convoId });
    try {
      const bundle = await group.commit(alicePhone, { add: [bobLaptop] });
      expect((await commitBundle(api, convoId, bundle, alicePhone)).status).toBe(200);
      const [commit, added] = await alices.events!.take(2);
      expect(commit?.event).toBe("message");
      expect(added?.data).toMatchObject({ type: "deviceAdded", did: bobLaptop.did, deviceId: "laptop" });

      expect((await api.post(bobLaptop.did, "revokeDevice", { deviceId: "laptop" })).status).toBe(200);
      expect((await alices.events!.nextParsed())?.data).toMatchObject({ type: "deviceRevoked", deviceId: "laptop" });
    } finally {
      await alices.close();
    }
  });
});
