/**
 * A Welcome sent to many recipients is stored once (welcome_payloads), not once per recipient row, and every
 * recipient still fetches exactly those bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../src/bytes.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit } from "../helpers/mls.js";
import { Api, ok, range } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

let welcome: Uint8Array;
beforeAll(async () => {
  welcome = (await makeGroupWithCommit()).welcomeBytes;
});

/** Rows and bytes of the convo's welcome rows and of the payload under `hash`. */
async function stored(convoId: string, hash: string) {
  const [row] = await db.query<{ rows: number; row_bytes: number; payloads: number; payload_bytes: number }>(
    `SELECT (SELECT count(*) FROM welcome_messages WHERE convo_id = $1) AS rows,
            (SELECT coalesce(sum(octet_length(welcome)), 0) FROM welcome_messages WHERE convo_id = $1) AS row_bytes,
            (SELECT count(*) FROM welcome_payloads WHERE hash = $2) AS payloads,
            (SELECT coalesce(sum(octet_length(welcome)), 0) FROM welcome_payloads WHERE hash = $2) AS payload_bytes`,
    [convoId, hash],
  );
  return Object.fromEntries(Object.entries(row!).map(([key, value]) => [key, Number(value)]));
}

describe("welcome storage", () => {
  it("stores createConvo's Welcome once for N recipients, and each recipient fetches the same bytes", async () => {
    const alice = unique("did:plc:alice");
    const members = range(1, 20).map(() => unique("did:plc:m"));
    const convoId = await api.createConvo(alice, members, { welcomeMessage: welcome });

    expect(await stored(convoId, sha256Hex(welcome))).toEqual({
      rows: 20,
      row_bytes: 0,
      payloads: 1,
      payload_bytes: welcome.byteLength,
    });
    for (const did of members) {
      const reply = await ok(api.as(did).getWelcome({ convoId }));
      expect(reply.data.welcome).toEqual(new Uint8Array(welcome));
    }
  });

  it("reuses the stored bytes for addMembers and for another conversation with the same Welcome", async () => {
    const alice = unique("did:plc:alice");
    const first = await api.createConvo(alice, [unique("did:plc:bob")], { welcomeMessage: welcome });
    const second = await api.createConvo(alice);
    const newcomers = range(1, 5).map(() => unique("did:plc:new"));
    await ok(api.as(alice).addMembers({ convoId: second, didList: newcomers, welcomeMessage: welcome }));

    expect(await stored(first, sha256Hex(welcome))).toMatchObject({ rows: 1, row_bytes: 0, payloads: 1 });
    expect(await stored(second, sha256Hex(welcome))).toMatchObject({ rows: 5, row_bytes: 0, payloads: 1 });
    for (const did of newcomers) {
      expect((await api.as(did).getWelcome({ convoId: second })).data.welcome).toEqual(new Uint8Array(welcome));
    }
  });
});
