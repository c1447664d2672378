/**
 * Who may follow a conversation: members only, and a member removed (or leaving) while streaming stops
 * receiving at that event. In process, on real Postgres.
 */
import type { Hono } from "hono";
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { clientFor } from "../helpers/client.js";
import { conversation, send, stream } from "./convo.js";

const db = testDatabase();
afterAll(() => db.close());

/** Refused before any event: a JSON error, not an event stream. */
async function expectRefused(app: Hono, did: string, convoId: string, error: string): Promise<void> {
  for (const request of [{ convoId }, { convoId, cursor: 0 }, { convoId, lastEventId: 1 }]) {
    const { status, response, events } = await stream(app, did, request);
    expect(status).toBe(403);
    expect(events).toBeUndefined();
    expect(response.headers.get("Content-Type")).toMatch(/^application\/json/);
    expect(await response.json()).toMatchObject({ error });
  }
}

describe("streamConvoEvents membership", () => {
  it("refuses someone who never was a member", async () => {
    const { app } = testApp(db);
    const { convoId } = await conversation(app);
    await expectRefused(app, unique("did:plc:mallory"), convoId, "NotMember");
  });

  it("refuses members who left or were removed", async () => {
    const { app } = testApp(db);
    const { alice, bob, carol, convoId } = await conversation(app);
    expect((await clientFor(app, bob).leaveConvo({ convoId })).status).toBe(200);
    expect((await clientFor(app, alice).leaveConvo({ convoId, targetDid: carol })).status).toBe(200);
    await expectRefused(app, bob, convoId, "NotMember");
    await expectRefused(app, carol, convoId, "NotMember");
  });

  it("ends a removed member's stream with the removal, while the others continue", async () => {
    const { app } = testApp(db);
    const { alice, bob, carol, convoId } = await conversation(app);
    const carols = await stream(app, carol, { convoId });
    const bobs = await stream(app, bob, { convoId });
    const before = await send(app, alice, convoId, "before");
    expect((await carols.events!.nextParsed())?.data.id).toBe(before.messageId);

    expect((await clientFor(app, alice).leaveConvo({ convoId, targetDid: carol })).status).toBe(200);
    const after = await send(app, alice, convoId, "after");
    const removal = { type: "removed", did: carol, actor: alice, epoch: 0 };
    expect(await carols.events!.nextParsed()).toEqual({ cursor: 5, event: "membership", data: removal });
    expect(await carols.events!.next()).toBeUndefined();

    expect((await bobs.events!.take(3)).map((event) => event.data.id ?? event.data.type)).toEqual([
      before.messageId,
      "removed",
      after.messageId,
    ]);
    await bobs.close();
    await expectRefused(app, carol, convoId, "NotMember");
  });

  it("ends the stream of a member who leaves with their own `left` event", async () => {
    const { app } = testApp(db);
    const { alice, bob, convoId } = await conversation(app);
    const bobs = await stream(app, bob, { convoId });
    expect((await clientFor(app, bob).leaveConvo({ convoId })).status).toBe(200);
    await send(app, alice, convoId, "after bob left");
    expect(await bobs.events!.nextParsed()).toEqual({
      cursor: 4,
      event: "membership",
      data: { type: "left", did: bob, actor: bob, epoch: 0 },
    });
    expect(await bobs.events!.next()).toBeUndefined();
  });
});
