/**
 * The Welcome two-phase flow through the client against the real server: an app that crashed between fetching its
 * welcome and confirming it fetches the same welcome again (within the grace period) and confirms; a join that
 * fails is confirmed as failed and can be tried again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { XrpcClientError } from "mls-delivery-service/client";
import { start, type BattleServer } from "../battle/server.js";
import { testDatabase } from "../helpers/context.js";
import { makeGroupWithCommit } from "../helpers/mls.js";
import { clientFor, newDid, SUITE } from "./fixtures.js";

const db = testDatabase(2);
let server: BattleServer;
beforeAll(async () => void (server = await start()));
afterAll(async () => {
  await server?.stop();
  await db.close();
});

/** Alice's conversation with Bob invited by a real Welcome. */
async function invited() {
  const [alice, bob] = [newDid("alice"), newDid("bob")];
  const group = await makeGroupWithCommit({ creatorDid: alice, memberDid: bob });
  const convo = await clientFor(server.url, alice).createConvo({
    groupId: group.groupIdHex,
    cipherSuite: SUITE,
    initialMembers: [bob],
    welcomeMessage: group.welcomeBytes,
  });
  return { bob, convoId: convo.data.id, welcome: group.welcomeBytes };
}

const welcomeRow = async (convoId: string) =>
  (
    await db.query<{ state: string; error_details: string | null }>(
      `SELECT state, error_details FROM welcome_messages WHERE convo_id = $1`,
      [convoId],
    )
  )[0];

describe("acceptWelcome", () => {
  it("after a crash between fetch and confirm (and a server restart), fetches the same welcome again and confirms it", async () => {
    const { bob, convoId, welcome } = await invited();
    // The app fetches its welcome and dies before confirming: nothing of it survives but the server's record.
    const fetched = await clientFor(server.url, bob).getWelcome({ convoId });
    expect(fetched.data.welcome).toEqual(welcome);
    expect(await welcomeRow(convoId)).toEqual({ state: "in_flight", error_details: null });
    // The server goes down meanwhile too: the welcome's state is in the database.
    await server.kill9();
    server = await start({ PORT: String(server.port) });

    const restarted = clientFor(server.url, bob);
    const processed: Uint8Array[] = [];
    const joined = await restarted.acceptWelcome({ convoId }, (bytes) => {
      processed.push(bytes);
      return "joined";
    });
    expect(joined).toBe("joined");
    expect(processed).toEqual([welcome]);
    expect(await welcomeRow(convoId)).toMatchObject({ state: "consumed" });
    const gone = await restarted.getWelcome({ convoId }).catch((error: unknown) => error);
    expect(gone).toBeInstanceOf(XrpcClientError);
    expect(gone).toMatchObject({ status: 410, error: "WelcomeGone" });
  });

  it("confirms a failed join as failed, and the welcome can be fetched again", async () => {
    const { bob, convoId, welcome } = await invited();
    const client = clientFor(server.url, bob);
    const failed = client.acceptWelcome({ convoId }, () => {
      throw new Error("no key package matches");
    });
    await expect(failed).rejects.toThrow("no key package matches");
    expect(await welcomeRow(convoId)).toEqual({ state: "in_flight", error_details: "no key package matches" });
    expect(await client.acceptWelcome({ convoId }, (bytes) => bytes)).toEqual(welcome);
    expect(await welcomeRow(convoId)).toMatchObject({ state: "consumed" });
  });
});
