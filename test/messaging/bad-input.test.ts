/**
 * Bad input to every messaging method on real Postgres: wrong types, bad base64, malformed and oversize bodies,
 * out-of-range numbers, unknown ids and SQL-looking text. Each answer is the named 4xx with a body of exactly
 * {error, message} (the client checks the shape and that no answer is 5xx), and nothing bad is stored.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { base64, expectReply, randomBytes, range, SUITE, Xrpc, type Params } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());
const MAX_CIPHERTEXT_BYTES = 64;
const api = new Xrpc(testApp(db, { MAX_CIPHERTEXT_BYTES: String(MAX_CIPHERTEXT_BYTES) }).app);

const SQL = ["'; DROP TABLE messages;--", "1' OR '1'='1", '") OR 1=1; --', "$1; DELETE FROM members"];
const HEX = "ab".repeat(32);
/** JSON nested 100,000 arrays deep: parses fine, but recursion over it overflows the stack. */
const DEEP = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;

const alice = unique("did:plc:alice");
const bob = unique("did:plc:bob");
let convoId: string;
beforeAll(async () => {
  convoId = await api.createConvo(alice, [bob]);
});

/** Bad values by kind of field; each must be refused with 400 InvalidRequest. */
const WRONG_TYPES = [5, true, null, {}, []];
const BAD: Record<string, unknown[]> = {
  convoId: [...WRONG_TYPES, "", "x".repeat(129)],
  did: [...WRONG_TYPES, "", "not-a-did", "did:plc:", "did:PLC:abc", "did:plc:a b", `did:plc:${"a".repeat(3000)}`],
  didList: [...WRONG_TYPES.filter((value) => !Array.isArray(value)), "did:plc:a", [5], ["nope"], [null], [{}]],
  bytes: [
    ...WRONG_TYPES,
    [1, 2, 3],
    { $bytes: 5 },
    { $bytes: null },
    { $bytes: "AQID", extra: 1 },
    { bytes: "AQID" },
    "not base64!",
    "AQI",
    "AQ==AQ==",
    "====",
    "AQID\n",
    "-_-_",
    "",
  ],
  epoch: [-1, 1.5, "abc", 1e20, Number.MAX_SAFE_INTEGER + 2, null, true, [], {}, "", "0", "1"],
  idempotencyKey: [5, null, "", "x".repeat(256), "é", "a\nb"],
  keyPackageHashes: [5, "x", {}, [5], [{ did: bob }], [{ did: "nope", hash: HEX }], [{ did: bob, hash: "XYZ" }]],
  cursor: [5, null, true, {}, [], "", "x".repeat(257)],
  groupId: [5, null, "", "ABCD", "0", "zz", "a".repeat(130)],
  cipherSuite: [5, null, "", "x".repeat(129)],
  metadata: [5, "x", [], { name: 5 }, { name: "x".repeat(257) }, { description: "x".repeat(2049) }],
};

interface Procedure {
  method: string;
  /** A body that succeeds (fresh each time), so that only the mutated field is wrong. */
  valid(): Record<string, unknown>;
  fields: Record<string, keyof typeof BAD>;
  required: string[];
}

const procedures: Procedure[] = [
  {
    method: "createConvo",
    valid: () => ({ groupId: randomGroupId(), cipherSuite: SUITE, initialMembers: [bob] }),
    fields: {
      groupId: "groupId",
      cipherSuite: "cipherSuite",
      initialMembers: "didList",
      welcomeMessage: "bytes",
      keyPackageHashes: "keyPackageHashes",
      metadata: "metadata",
      idempotencyKey: "idempotencyKey",
    },
    required: ["groupId", "cipherSuite"],
  },
  {
    method: "addMembers",
    valid: () => ({ convoId, didList: [unique("did:plc:new")] }),
    fields: {
      convoId: "convoId",
      didList: "didList",
      commit: "bytes",
      welcomeMessage: "bytes",
      keyPackageHashes: "keyPackageHashes",
      epoch: "epoch",
      idempotencyKey: "idempotencyKey",
    },
    required: ["convoId", "didList"],
  },
  {
    method: "leaveConvo",
    // The creator removing someone who never joined: a harmless success.
    valid: () => ({ convoId, targetDid: unique("did:plc:stranger") }),
    fields: { convoId: "convoId", targetDid: "did", commit: "bytes", epoch: "epoch", idempotencyKey: "idempotencyKey" },
    required: ["convoId"],
  },
  {
    method: "sendMessage",
    valid: () => ({ convoId, ciphertext: base64("hello"), epoch: 0 }),
    fields: {
      convoId: "convoId",
      ciphertext: "bytes",
      epoch: "epoch",
      senderDid: "did",
      idempotencyKey: "idempotencyKey",
    },
    required: ["convoId", "ciphertext", "epoch"],
  },
  {
    method: "updateCursor",
    valid: () => ({ convoId, cursor: "42" }),
    fields: { convoId: "convoId", cursor: "cursor", idempotencyKey: "idempotencyKey" },
    required: ["convoId", "cursor"],
  },
];

async function messageCount(): Promise<number> {
  const [row] = await db.query<{ count: number }>(`SELECT count(*) AS count FROM messages WHERE convo_id = $1`, [
    convoId,
  ]);
  return row!.count;
}

describe.each(procedures)("$method", ({ method, valid, fields, required }) => {
  it("accepts the valid body the other cases start from", async () => {
    expectReply(await api.post(alice, method, valid()), 200);
  });

  it.each(Object.entries(fields))("refuses wrong values of %s (400 InvalidRequest)", async (field, kind) => {
    const before = await messageCount();
    for (const value of BAD[kind]!) {
      const reply = await api.post(alice, method, { ...valid(), [field]: value });
      expect(reply.status, `${field}: ${JSON.stringify(value)?.slice(0, 80)} → ${JSON.stringify(reply.body)}`).toBe(
        400,
      );
      expect(reply.body.error).toMatch(/^(InvalidRequest|InvalidCipherSuite)$/);
    }
    expect(await messageCount()).toBe(before);
  });

  it.each(required)("refuses a body without %s", async (field) => {
    const { [field]: _left, ...body } = valid();
    expectReply(await api.post(alice, method, body), 400, "InvalidRequest");
  });

  it("refuses bodies that are not a JSON object", async () => {
    for (const raw of ["", " ", "null", "[]", "[{}]", "5", '"text"', "true", "{", '{"convoId":', "not json", DEEP]) {
      const reply = await api.post(alice, method, raw);
      expect(reply.status, JSON.stringify(raw.slice(0, 40))).toBe(400);
      expect(reply.body.error).toBe("InvalidRequest");
    }
  });

  it("refuses a deeply nested field, with or without an idempotency key", async () => {
    const body = JSON.stringify(valid());
    const nested = `${body.slice(0, -1)},"${Object.keys(fields)[0]}":${DEEP}}`;
    expectReply(await api.post(alice, method, nested), 400, "InvalidRequest");
    const keyed = `${body.slice(0, -1)},"idempotencyKey":"${unique("deep-")}","${Object.keys(fields)[0]}":${DEEP}}`;
    expectReply(await api.post(alice, method, keyed), 400, "InvalidRequest");
  });

  it("takes SQL-looking text in every string field as plain text", async () => {
    for (const field of Object.keys(fields)) {
      for (const text of SQL) {
        const reply = await api.post(alice, method, { ...valid(), [field]: text });
        expect(reply.status, `${field}: ${text} → ${JSON.stringify(reply.body)}`).toBeLessThan(500);
      }
    }
    const [tables] = await db.query<{ messages: string | null; members: number }>(
      `SELECT to_regclass('messages')::text AS messages, (SELECT count(*) FROM members WHERE convo_id = $1) AS members`,
      [convoId],
    );
    expect(tables!.messages).toBe("messages");
    expect(tables!.members).toBeGreaterThanOrEqual(2);
  });
});

describe("what each field does with SQL-looking text", () => {
  it("answers 404 ConvoNotFound for it as a convoId", async () => {
    for (const text of SQL) {
      expectReply(
        await api.post(alice, "sendMessage", { convoId: text, ciphertext: base64("x"), epoch: 0 }),
        404,
        "ConvoNotFound",
      );
      expectReply(await api.post(alice, "addMembers", { convoId: text, didList: [bob] }), 404, "ConvoNotFound");
      expectReply(await api.post(alice, "leaveConvo", { convoId: text }), 404, "ConvoNotFound");
      expectReply(await api.post(alice, "updateCursor", { convoId: text, cursor: "1" }), 404, "ConvoNotFound");
      for (const method of ["getMessages", "getEpoch"]) {
        expectReply(await api.get(alice, method, { convoId: text }), 404, "ConvoNotFound");
      }
      expectReply(await api.get(alice, "getCommits", { convoId: text, fromEpoch: 0 }), 404, "ConvoNotFound");
    }
  });

  it("refuses it as a DID, bytes or group id (400)", async () => {
    for (const text of SQL) {
      expectReply(await api.post(alice, "addMembers", { convoId, didList: [text] }), 400, "InvalidRequest");
      expectReply(await api.post(alice, "leaveConvo", { convoId, targetDid: text }), 400, "InvalidRequest");
      const send = await api.post(alice, "sendMessage", { convoId, ciphertext: text, epoch: 0, senderDid: text });
      expectReply(send, 400, "InvalidRequest");
      const created = await api.post(alice, "createConvo", { groupId: text, cipherSuite: SUITE });
      expectReply(created, 400, "InvalidRequest");
      expectReply(
        await api.post(alice, "createConvo", { groupId: randomGroupId(), cipherSuite: text }),
        400,
        "InvalidCipherSuite",
      );
    }
  });

  it("stores it verbatim where the field is free text", async () => {
    const own = await api.createConvo(alice, [bob], { metadata: { name: SQL[0], description: SQL[1] } });
    for (const text of SQL) {
      expectReply(await api.post(alice, "updateCursor", { convoId: own, cursor: text }), 200);
      const [cursor] = await db.query<{ cursor: string }>(
        `SELECT cursor FROM read_cursors WHERE convo_id = $1 AND did = $2`,
        [own, alice],
      );
      expect(cursor!.cursor).toBe(text);
      const sent = await api.post(
        bob,
        "sendMessage",
        { convoId: own, ciphertext: base64(text), epoch: 0 },
        {
          "Idempotency-Key": text,
        },
      );
      expectReply(sent, 200);
    }
    const [convo] = await db.query<{ name: string; description: string }>(
      `SELECT name, description FROM conversations WHERE id = $1`,
      [own],
    );
    expect(convo).toEqual({ name: SQL[0], description: SQL[1] });
    const page = await api.get(alice, "getMessages", { convoId: own });
    expect(page.body.messages.map((m: { ciphertext: { $bytes: string } }) => m.ciphertext.$bytes)).toEqual(
      SQL.map((text) => base64(text)),
    );
  });
});

describe("text Postgres cannot store", () => {
  it("refuses NUL characters with 400, not 500", async () => {
    expectReply(await api.post(alice, "updateCursor", { convoId, cursor: "a\u0000b" }), 400, "InvalidRequest");
    expectReply(await api.post(alice, "sendMessage", { convoId: "a\u0000b", ciphertext: "AQ==", epoch: 0 }), 400);
    expectReply(await api.get(alice, "getEpoch", { convoId: "a\u0000b" }), 400, "InvalidRequest");
    const named = await api.post(alice, "createConvo", {
      groupId: randomGroupId(),
      cipherSuite: SUITE,
      metadata: { name: "a\u0000b" },
    });
    expectReply(named, 400, "InvalidRequest");
  });
});

describe("sizes and limits", () => {
  it("refuses ciphertexts and commits over MAX_CIPHERTEXT_BYTES", async () => {
    const own = await api.createConvo(alice, [bob]);
    const send = (size: number) =>
      api.post(alice, "sendMessage", { convoId: own, ciphertext: base64(randomBytes(size)), epoch: 0 });
    expectReply(await send(MAX_CIPHERTEXT_BYTES + 1), 400, "InvalidRequest");
    expectReply(await send(100_000), 400, "InvalidRequest");
    expectReply(await send(MAX_CIPHERTEXT_BYTES), 200);

    const commit = { $bytes: base64(randomBytes(MAX_CIPHERTEXT_BYTES + 1)) };
    const add = await api.post(alice, "addMembers", { convoId: own, didList: [unique("did:plc:x")], commit, epoch: 0 });
    expectReply(add, 400, "InvalidRequest");
    expectReply(await api.post(bob, "leaveConvo", { convoId: own, commit, epoch: 0 }), 400, "InvalidRequest");
    expect((await api.get(alice, "getEpoch", { convoId: own })).body.currentEpoch).toBe(0);
  });

  it("refuses huge arrays", async () => {
    const dids = (n: number) => range(1, n).map((i) => `did:plc:huge${i}`);
    expectReply(await api.post(alice, "addMembers", { convoId, didList: dids(10_001) }), 400, "InvalidRequest");
    expectReply(await api.post(alice, "addMembers", { convoId, didList: dids(5_000) }), 400, "TooManyMembers");
    const hashes = dids(10_001).map((did) => ({ did, hash: HEX }));
    expectReply(await api.post(alice, "addMembers", { convoId, didList: [bob], keyPackageHashes: hashes }), 400);
    const numbers = range(1, 50_000);
    expectReply(
      await api.post(alice, "sendMessage", { convoId, ciphertext: numbers, epoch: 0 }),
      400,
      "InvalidRequest",
    );
    expectReply(
      await api.post(alice, "createConvo", { groupId: randomGroupId(), cipherSuite: SUITE, initialMembers: dids(101) }),
      400,
      "TooManyMembers",
    );
  });

  it("refuses a body over BODY_LIMIT_BYTES with 413 PayloadTooLarge", async () => {
    const limited = new Xrpc(testApp(db, { BODY_LIMIT_BYTES: "4096" }).app);
    const reply = await limited.post(alice, "sendMessage", {
      convoId,
      ciphertext: base64(randomBytes(8192)),
      epoch: 0,
    });
    expectReply(reply, 413, "PayloadTooLarge");
  });

  it("refuses the welcome of an empty byte string", async () => {
    const reply = await api.post(alice, "addMembers", { convoId, didList: [unique("did:plc:x")], welcomeMessage: "" });
    expectReply(reply, 400, "InvalidRequest");
    const created = await api.post(alice, "createConvo", {
      groupId: randomGroupId(),
      cipherSuite: SUITE,
      initialMembers: [bob],
      welcomeMessage: "",
    });
    expectReply(created, 400, "InvalidRequest");
  });
});

describe("queries", () => {
  const cases: { method: string; valid: () => Params; bad: Params[] }[] = [
    {
      method: "getMessages",
      valid: () => ({ convoId }),
      bad: [
        {},
        { convoId: "" },
        { convoId: "x".repeat(129) },
        ...[0, 101, "abc", -1, 1.5, "9".repeat(400)].map((limit) => ({ convoId, limit })),
        ...[-1, "abc", 1.5, "1e20", "9".repeat(400)].map((sinceSeq) => ({ convoId, sinceSeq })),
        ...["abc", "-1", "1.5", "1".repeat(16), ...SQL].map((cursor) => ({ convoId, cursor })),
        ...["", "x".repeat(129), ...SQL].map((sinceMessage) => ({ convoId, sinceMessage })),
      ],
    },
    {
      method: "getCommits",
      valid: () => ({ convoId, fromEpoch: 0 }),
      bad: [
        { convoId },
        { fromEpoch: 0 },
        ...[-1, "abc", 1.5, "100000000000000000000", "", ...SQL].map((fromEpoch) => ({ convoId, fromEpoch })),
        ...[-1, "abc", "100000000000000000000"].map((toEpoch) => ({ convoId, fromEpoch: 0, toEpoch })),
        { convoId, fromEpoch: 5, toEpoch: 4 },
      ],
    },
    {
      method: "getEpoch",
      valid: () => ({ convoId }),
      bad: [{}, { convoId: "" }, { convoId: "x".repeat(129) }],
    },
    {
      method: "getConvos",
      valid: () => ({}),
      bad: [
        ...[0, 101, "abc", -1].map((limit) => ({ limit })),
        ...["", "garbage", "2024-01-01T00:00:00.000Z", ...SQL].map((cursor) => ({ cursor })),
      ],
    },
  ];

  it.each(cases)("$method refuses bad parameters with 400 InvalidRequest", async ({ method, valid, bad }) => {
    expectReply(await api.get(alice, method, valid()), 200);
    for (const params of bad) {
      const reply = await api.get(alice, method, params);
      expect(reply.status, `${JSON.stringify(params).slice(0, 120)} → ${JSON.stringify(reply.body)}`).toBe(400);
      expect(reply.body.error).toBe("InvalidRequest");
    }
  });

  it.each(cases)("$method answers 405 to POST and 401 without a token", async ({ method, valid }) => {
    expectReply(await api.post(alice, method, valid()), 405);
    expectReply(await api.get(null, method, valid()), 401, "AuthenticationRequired");
  });
});

describe("verbs and tokens of procedures", () => {
  it.each(procedures)("$method answers 405 to GET and 401 without or with a bad token", async ({ method, valid }) => {
    expectReply(await api.get(alice, method, {}), 405);
    expectReply(await api.post(null, method, valid()), 401, "AuthenticationRequired");
    const forged = await api.app.request(`/xrpc/blue.catbird.mls.${method}`, {
      method: "POST",
      headers: { Authorization: "Bearer a.b.c", "Content-Type": "application/json" },
      body: JSON.stringify(valid()),
    });
    expect(forged.status).toBe(401);
    expect(Object.keys((await forged.json()) as object).sort()).toEqual(["error", "message"]);
  });
});
