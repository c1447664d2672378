/**
 * Fuzzing the HTTP surface with fast-check on real Postgres: for every method of the registry, random and
 * mutated bodies, query strings, verbs and headers (valid, forged and garbage tokens of both kinds). No
 * answer may be a 5xx, every error has the {error, message} shape, and the server is healthy afterwards.
 *
 * FUZZ_RUNS sets the number of cases (default 2,000, shared out over the methods); FUZZ_SEED replays a run.
 */
import type { Keypair } from "@atproto/crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { methods } from "../../src/api/index.js";
import { randomGroupId, testApp, testDatabase, tokenFor } from "../helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage, TestGroup } from "../helpers/mls.js";
import { DidServer } from "./didServer.js";
import { b64url, claims, didDocument, newKeypair, NSID, plcDid, SERVICE_DID, signToken } from "./identities.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

const db = testDatabase();
const server = new DidServer();
let target: ReturnType<typeof testApp>;
const alice = plcDid();
const bob = plcDid();
let aliceKey: Keypair;
let aliceToken: string;
let keyPackage: string;
let welcome: string;

beforeAll(async () => {
  await server.start();
  aliceKey = await newKeypair("ES256K");
  server.plc.set(alice, didDocument(alice, aliceKey));
  // Development tokens beside service tokens (explicitly allowed), and no rate limits: every fuzzed
  // request comes from one (unknown) address and a few callers.
  target = testApp(db, {
    SERVICE_DID,
    ALLOW_DEV_TOKENS: "true",
    RATE_LIMIT_XRPC_PER_IP: "0",
    RATE_LIMIT_PER_DID: "0",
    PLC_DIRECTORY_URL: server.url,
    DID_WEB_ALLOW_PRIVATE: "true",
  });
  aliceToken = await tokenFor(alice);
  keyPackage = Buffer.from(await makeKeyPackage(alice)).toString("base64");
  welcome = Buffer.from((await makeGroupWithCommit()).welcomeBytes).toString("base64");
});
afterAll(async () => {
  await server.close();
  await db.close();
});

/** Real MLS bytes of a conversation's group: commits for epochs 0 and 1 (and a rival for 0), messages in epoch 0. */
interface GroupBytes {
  commits: string[];
  messages: string[];
}

/** A fresh conversation of Alice's with Bob, so every method starts where Alice is a member. */
async function newConvo(groupId = randomGroupId()): Promise<string> {
  const created = await target.app.request(`/xrpc/${NSID}createConvo`, {
    method: "POST",
    headers: { Authorization: `Bearer ${aliceToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ groupId, cipherSuite: SUITE, initialMembers: [bob] }),
  });
  expect(created.status).toBe(200);
  return ((await created.json()) as { id: string }).id;
}

/** A fresh conversation over a real ts-mls group, with bytes of that group for the commit and ciphertext fields. */
async function newGroupConvo(): Promise<{ convoId: string; bytes: GroupBytes }> {
  const group = await TestGroup.create({ creatorDid: alice });
  const convoId = await newConvo(group.groupIdHex);
  const messages = [await group.application(), await group.proposal()];
  const commits = [await group.rivalCommit(), ...(await group.commits(2))];
  return { convoId, bytes: { commits: commits.map(base64), messages: messages.map(base64) } };
}

type Method = (typeof methods)[number];
const inAYear = () => new Date(Date.now() + 365 * 86_400_000).toISOString();
const base64 = (data: string | Uint8Array) => Buffer.from(data).toString("base64");

/** A valid value for each field name the methods use, so a mutated body gets past the first check. */
function validValues(convoId: string, bytes: GroupBytes): Record<string, fc.Arbitrary<unknown>> {
  const keyPackageInput = { keyPackage, cipherSuite: SUITE, expires: inAYear() };
  return {
    convoId: fc.constant(convoId),
    groupId: fc.constant(null).map(randomGroupId),
    cipherSuite: fc.constant(SUITE),
    initialMembers: fc.constantFrom([bob], []),
    didList: fc.constant(null).map(() => [plcDid()]),
    dids: fc.constantFrom([bob], [alice, bob]),
    targetDid: fc.constant(null).map(plcDid),
    senderDid: fc.constant(alice),
    welcomeMessage: fc.constant(welcome),
    commit: fc.constantFrom(...bytes.commits),
    ciphertext: fc.constantFrom(base64("hello"), { $bytes: base64("hello") }, ...bytes.messages),
    keyPackageHashes: fc.constantFrom([], [{ did: bob, hash: "ab".repeat(32) }]),
    metadata: fc.constant({ name: "fuzz", description: "fuzzed" }),
    idempotencyKey: fc.stringMatching(/^[ -~]{1,40}$/),
    epoch: fc.constantFrom(0, 1),
    fromEpoch: fc.constant(0),
    toEpoch: fc.constant(3),
    sinceSeq: fc.constant(0),
    sinceMessage: fc.constant("01J0000000000000000000000"),
    cursor: fc.constantFrom("1", "0"),
    limit: fc.constantFrom(1, 50),
    success: fc.boolean(),
    errorDetails: fc.constant("could not process"),
    keyPackage: fc.constant(keyPackage),
    expires: fc.constant(null).map(inAYear),
    keyPackages: fc.constant([keyPackageInput]),
  };
}

/** Any JSON-ish value: meaningful ones often, random ones too. */
const anyValue = (valid: Record<string, fc.Arbitrary<unknown>>) =>
  fc.oneof(
    { arbitrary: fc.oneof(...Object.values(valid)), weight: 3 },
    { arbitrary: fc.jsonValue({ maxDepth: 2 }), weight: 2 },
    { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 2 },
    { arbitrary: fc.oneof(fc.integer(), fc.double(), fc.bigInt().map(String)), weight: 1 },
  );

type Mutation = { op: "set"; field: string; value: unknown } | { op: "delete"; field: string };

/**
 * The method's fields with valid values (required ones always, optional ones sometimes), then up to
 * three mutations: a field set to any value, a field removed, a stray key added.
 */
function mutatedInput(method: Method, valid: Record<string, fc.Arbitrary<unknown>>) {
  const shape =
    (method.input as unknown as { shape?: Record<string, { safeParse(v: unknown): { success: boolean } }> }).shape ??
    {};
  const fields = Object.keys(shape);
  const optional = new Set(fields.filter((field) => shape[field]!.safeParse(undefined).success));
  const any = anyValue(valid);
  const base = fc.record(Object.fromEntries(fields.map((field) => [field, valid[field] ?? any])), {
    requiredKeys: fields.filter((field) => !optional.has(field)),
  });
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({
      op: fc.constant("set" as const),
      field: fc.oneof(fc.constantFrom(...fields, "x"), fc.string({ maxLength: 8 })),
      value: any,
    }),
    fc.record({ op: fc.constant("delete" as const), field: fc.constantFrom(...fields, "x") }),
  );
  const mutations = fc.oneof(fc.constant([]), fc.array(mutation, { minLength: 1, maxLength: 3 }));
  return fc.tuple(base, mutations).map(([input, changes]) => {
    const result: Record<string, unknown> = { ...input };
    for (const change of changes) {
      if (change.op === "set") result[change.field] = change.value;
      else delete result[change.field];
    }
    return { fields, input: result };
  });
}

const truncated = (text: string) => fc.nat({ max: Math.max(0, text.length - 1) }).map((end) => text.slice(0, end));

const body = (mutated: fc.Arbitrary<{ input: Record<string, unknown> }>) =>
  fc.oneof(
    { arbitrary: mutated.map(({ input }) => JSON.stringify(input)), weight: 8 },
    { arbitrary: fc.jsonValue().map((json) => JSON.stringify(json)), weight: 1 },
    { arbitrary: mutated.chain(({ input }) => truncated(JSON.stringify(input))), weight: 1 },
    { arbitrary: fc.string({ unit: "binary", maxLength: 200 }), weight: 1 },
    { arbitrary: fc.uint8Array({ maxLength: 200 }), weight: 1 },
  );

/** Query parameters from the same inputs: arrays repeat the key, objects go as JSON text. */
function queryString(mutated: fc.Arbitrary<{ input: Record<string, unknown> }>) {
  const text = (value: unknown) => (typeof value === "string" ? value : (JSON.stringify(value) ?? ""));
  return fc
    .tuple(
      mutated,
      fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.string({ unit: "binary", maxLength: 30 })), { maxLength: 2 }),
    )
    .map(([{ input }, stray]) => {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(input)) {
        for (const item of Array.isArray(value) ? value : [value]) params.append(key, text(item));
      }
      for (const [key, value] of stray) params.append(key, value);
      return params.toString();
    });
}

/** A header value fetch accepts (printable Latin-1). */
const headerValue = fc.string({ maxLength: 80 }).map((text) => text.replace(/[^\x20-\x7e]/g, ""));

/** One character of a valid token replaced, or the token cut short. */
const mutatedToken = (token: string) =>
  fc.oneof(
    fc
      .tuple(fc.nat({ max: token.length - 1 }), fc.constantFrom(..."AZaz09-_.=+/ "))
      .map(([at, char]) => token.slice(0, at) + char + token.slice(at + 1)),
    truncated(token),
  );

interface ServiceTokenSpec {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  signature: "valid" | "random" | "empty";
}

/** Service tokens with random headers and claims: mostly well-formed, sometimes properly signed. */
const serviceToken = (method: string): fc.Arbitrary<ServiceTokenSpec> =>
  fc.record({
    header: fc.record(
      { alg: fc.constantFrom("ES256K", "ES256", "HS256", "none", "RS256", 5), typ: fc.constantFrom("JWT", "at+jwt") },
      { requiredKeys: ["alg"] },
    ),
    claims: fc.record(
      {
        iss: fc.constantFrom(alice, bob, plcDid(), "did:web:127.0.0.1%3A1", "not-a-did"),
        aud: fc.constantFrom(SERVICE_DID, "did:web:elsewhere.example"),
        exp: fc.oneof(fc.constant(Math.floor(Date.now() / 1000) + 600), fc.integer(), fc.double()),
        iat: fc.integer({ min: 0, max: 2 ** 33 }),
        lxm: fc.constantFrom(`${NSID}${method}`, `${NSID}sendMessage`, 7),
        jti: fc.oneof(fc.stringMatching(/^[0-9a-f]{8,32}$/), fc.string({ unit: "binary", maxLength: 10 })),
      },
      { requiredKeys: [] },
    ),
    signature: fc.constantFrom("valid", "random", "empty"),
  });

async function renderServiceToken({ header, claims: payload, signature }: ServiceTokenSpec): Promise<string> {
  if (signature === "valid") return signToken(aliceKey, payload, header);
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  return `${input}.${signature === "empty" ? "" : b64url(crypto.getRandomValues(new Uint8Array(64)))}`;
}

type Auth =
  | { kind: "none" }
  | { kind: "dev" }
  | { kind: "valid-service" }
  | { kind: "raw"; value: string }
  | { kind: "service"; spec: ServiceTokenSpec };

const authorization = (method: string): fc.Arbitrary<Auth> =>
  fc.oneof(
    { arbitrary: fc.constant<Auth>({ kind: "dev" }), weight: 10 },
    { arbitrary: fc.constant<Auth>({ kind: "valid-service" }), weight: 1 },
    { arbitrary: fc.constant<Auth>({ kind: "none" }), weight: 1 },
    { arbitrary: serviceToken(method).map<Auth>((spec) => ({ kind: "service", spec })), weight: 2 },
    {
      arbitrary: fc
        .constant(null)
        .chain(() => mutatedToken(aliceToken))
        .map<Auth>((value) => ({ kind: "raw", value: `Bearer ${value}` })),
      weight: 2,
    },
    { arbitrary: headerValue.map<Auth>((value) => ({ kind: "raw", value })), weight: 1 },
  );

async function renderAuth(auth: Auth, method: string): Promise<string | undefined> {
  switch (auth.kind) {
    case "none":
      return undefined;
    case "dev":
      return `Bearer ${aliceToken}`;
    case "valid-service":
      return `Bearer ${await signToken(aliceKey, claims(alice, method))}`;
    case "raw":
      return auth.value;
    case "service":
      return `Bearer ${await renderServiceToken(auth.spec)}`;
  }
}

/** Undefined four times in five. */
const sometimes = <T>(arbitrary: fc.Arbitrary<T>) =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary, weight: 1 });

function request(method: Method, convoId: string, bytes: GroupBytes) {
  const mutated = mutatedInput(method, validValues(convoId, bytes));
  const verb = method.type === "query" ? "GET" : "POST";
  return fc.record({
    verb: fc.oneof(
      { arbitrary: fc.constant(verb), weight: 12 },
      fc.constantFrom("GET", "POST", "PUT", "DELETE", "HEAD"),
    ),
    query:
      method.type === "query"
        ? queryString(mutated)
        : fc.oneof({ arbitrary: fc.constant(""), weight: 4 }, queryString(mutated)),
    body: body(mutated),
    auth: authorization(method.name),
    contentType: fc.option(fc.constantFrom("application/json", "text/plain", "application/json; charset=latin1", ""), {
      nil: undefined,
      freq: 5,
    }),
    idempotencyKey: sometimes(headerValue),
    lastEventId: sometimes(headerValue),
    extra: sometimes(fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), headerValue)),
  });
}

type RequestSpec = ReturnType<typeof request> extends fc.Arbitrary<infer T> ? T : never;

async function send(method: Method, spec: RequestSpec) {
  const headers = new Headers();
  const auth = await renderAuth(spec.auth, method.name);
  if (auth !== undefined) headers.set("Authorization", auth);
  if (spec.contentType !== undefined) headers.set("Content-Type", spec.contentType);
  if (spec.idempotencyKey !== undefined) headers.set("Idempotency-Key", spec.idempotencyKey);
  if (spec.lastEventId !== undefined) headers.set("Last-Event-ID", spec.lastEventId);
  if (spec.extra && !["authorization", "content-length", "host"].includes(spec.extra[0].toLowerCase())) {
    headers.set(spec.extra[0], spec.extra[1]);
  }
  const hasBody = spec.verb !== "GET" && spec.verb !== "HEAD";
  const res = await target.app.request(`/xrpc/${NSID}${method.name}${spec.query ? `?${spec.query}` : ""}`, {
    method: spec.verb,
    headers,
    body: hasBody ? spec.body : undefined,
  });
  if (res.headers.get("Content-Type")?.startsWith("text/event-stream")) {
    await res.body?.cancel();
    return { status: res.status, text: "" };
  }
  return { status: res.status, text: await res.text() };
}

describe("fuzzing every method", () => {
  const runs = Math.ceil(RUNS / methods.length);

  it.each(methods.map((method) => [method.name, method] as const))("%s never answers 5xx", async (_, method) => {
    const { convoId, bytes } = await newGroupConvo();
    await fc.assert(
      fc.asyncProperty(request(method, convoId, bytes), async (spec) => {
        const { status, text } = await send(method, spec);
        expect(status, text.slice(0, 300)).toBeLessThan(500);
        if (status >= 400 && spec.verb !== "HEAD") {
          expect(Object.keys(JSON.parse(text) as object).sort(), text.slice(0, 300)).toEqual(["error", "message"]);
        }
      }),
      { numRuns: runs, seed: SEED, endOnFailure: true },
    );
  });

  it("leaves the server healthy: ready, and serving the same caller", async () => {
    expect((await target.app.request("/health/ready")).status).toBe(200);
    const res = await target.app.request(`/xrpc/${NSID}getEpoch?convoId=${await newConvo()}`, {
      headers: { Authorization: `Bearer ${await signToken(aliceKey, claims(alice, "getEpoch"))}` },
    });
    expect(res.status).toBe(200);
  });
});
