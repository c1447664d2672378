/**
 * The Welcome two-phase flow through the client against the real server: an app that crashed between fetching its
 * welcome and confirming it fetches the same welcome again (within the grace period) and confirms; a join that
 * fails is confirmed as failed and can be tried again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, WelcomeConfirmError, XrpcClientError } from "mls-delivery-service/client";
import { start, type BattleServer } from "../battle/server.js";
import { testDatabase } from "../helpers/context.js";
import { makeGroupWithCommit } from "../helpers/mls.js";
import { clientFor, newDid, SUITE } from "./fixtures.js";

const db = testDatabase(2);
let server: BattleServer;
// A one-second grace period: the test of a confirm that comes after it waits it out.
let brief: BattleServer;
beforeAll(async () => void ([server, brief] = await Promise.all([start(), start({ WELCOME_GRACE_SECONDS: "1" })])));
afterAll(async () => {
  await Promise.all([server?.stop(), brief?.stop()]);
  await db.close();
});

/** Alice's conversation with Bob invited by a real Welcome. */
async function invited(at: BattleServer = server) {
  const [alice, bob] = [newDid("alice"), newDid("bob")];
  const group = await makeGroupWithCommit({ creatorDid: alice, memberDid: bob });
  const convo = await clientFor(at.url, alice).createConvo({
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

describe("acceptWelcome when a confirm fails", () => {
  it("a join confirmed after the grace period (410 WelcomeGone) is thrown with its result, which stands", async () => {
    const { bob, convoId } = await invited(brief);
    const client = clientFor(brief.url, bob);
    const failure = await client
      .acceptWelcome({ convoId }, async () => {
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        return "joined state";
      })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(WelcomeConfirmError);
    expect(failure).toMatchObject({ joined: "joined state", cause: { status: 410, error: "WelcomeGone" } });
    // The membership does not hang on the confirm: Bob is in the conversation.
    expect((await client.getEpoch({ convoId })).status).toBe(200);
  });

  /** getWelcome answers a welcome; confirmWelcome answers `confirm`. */
  const scripted = (confirm: () => Response) =>
    createClient({
      service: "http://mls.invalid",
      fetch: (request) =>
        request.url.includes("getWelcome") ? Response.json({ welcome: { $bytes: "AAEC" } }) : confirm(),
    });

  it("a failed join whose confirm failed too rethrows the join's error, with the confirm's as its cause", async () => {
    const client = scripted(() => Response.json({ error: "WelcomeGone" }, { status: 410 }));
    const joinError = new Error("no key package matches");
    const failure = await client
      .acceptWelcome({ convoId: "c1" }, () => {
        throw joinError;
      })
      .catch((error: unknown) => error);
    expect(failure).toBe(joinError);
    expect(joinError.cause).toMatchObject({ status: 410, error: "WelcomeGone" });
  });

  it("takes a signal and a deadline", async () => {
    const hanging = createClient({
      service: "http://mls.invalid",
      fetch: (request) =>
        new Promise((_, reject) => request.signal.addEventListener("abort", () => reject(request.signal.reason))),
    });
    await expect(hanging.acceptWelcome({ convoId: "c1" }, () => 1, { deadlineMs: 200 })).rejects.toMatchObject({
      name: "TimeoutError",
    });
    const stop = new AbortController();
    stop.abort(new Error("the user left"));
    await expect(hanging.acceptWelcome({ convoId: "c1" }, () => 1, { signal: stop.signal })).rejects.toThrow(
      "the user left",
    );
  });
});
