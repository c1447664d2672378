import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { methods } from "../../src/api/index.js";
import { COMMON_ERRORS, ERROR_STATUS, methodDocs, PROCEDURE_ERRORS } from "../../src/docs/methodDocs.js";
import type { OpenApiDocument } from "../../src/docs/openapi.js";
import { NSID_PREFIX } from "../../src/xrpc.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { makeGroupWithCommit, makeKeyPackage, TestGroup } from "../helpers/mls.js";
import { RosterGroup } from "../helpers/rosterGroup.js";
import { xrpc } from "../helpers/xrpc.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

const db = testDatabase();
afterAll(() => db.close());

const inputKeys = (schema: z.ZodType) => Object.keys((schema as z.ZodObject).shape).sort();

describe("GET /openapi.json", () => {
  it("describes every method with its verb, parameters or body, output and errors, without a token", async () => {
    const { app } = testApp(db);
    const response = await app.request("/openapi.json");
    expect(response.status).toBe(200);
    const doc = (await response.json()) as OpenApiDocument;
    expect(doc.openapi).toBe("3.1.0");

    for (const method of methods) {
      const path = doc.paths[`/xrpc/${NSID_PREFIX}${method.name}`];
      const op = method.type === "query" ? path?.get : path?.post;
      expect(op, method.name).toBeDefined();
      expect(op!.operationId).toBe(method.name);
      expect(op!.description).toBe(methodDocs[method.name]!.description);
      expect(op!.security).toEqual([{ bearer: [] }]);
      if (method.type === "query") {
        const names = op!.parameters!.filter((param) => param.in === "query").map((param) => param.name);
        expect(names.sort()).toEqual(inputKeys(method.input));
        expect(op!.requestBody).toBeUndefined();
      } else {
        const body = op!.requestBody!.content["application/json"]!.schema;
        expect(Object.keys(body.properties as object).sort()).toEqual(inputKeys(method.input));
        expect(op!.parameters!.map((param) => param.name)).toEqual(["Idempotency-Key"]);
      }
      const output = methodDocs[method.name]!.output;
      const encoding = "encoding" in output ? output.encoding : "application/json";
      expect(Object.keys(op!.responses["200"]!.content!)).toEqual([encoding]);

      const errors = [
        ...COMMON_ERRORS,
        ...(method.type === "query" ? [] : PROCEDURE_ERRORS),
        ...methodDocs[method.name]!.errors,
      ];
      for (const name of errors) {
        const listed = op!.responses[String(ERROR_STATUS[name])]?.content?.["application/json"]?.schema;
        expect((listed?.properties as { error: { enum: string[] } }).error.enum, `${method.name} ${name}`).toContain(
          name,
        );
      }
    }
    for (const plain of ["/health", "/health/ready", "/metrics", "/docs", "/openapi.json"]) {
      expect(doc.paths[plain]?.get?.security).toEqual([]);
    }
  });

  it("documents each method exactly once (methodDocs matches the registry)", () => {
    expect(Object.keys(methodDocs).sort()).toEqual(methods.map((method) => method.name).sort());
  });
});

describe("GET /docs", () => {
  it("is one self-contained HTML page listing every method, its parameters and its errors", async () => {
    const { app } = testApp(db);
    const response = await app.request("/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("Content-Type")).toMatch(/^text\/html/);
    const html = await response.text();
    for (const method of methods) {
      expect(html).toContain(`<section id="${method.name}">`);
      expect(html).toContain(`<code>/xrpc/${NSID_PREFIX}${method.name}</code>`);
      for (const key of inputKeys(method.input)) expect(html, `${method.name}.${key}`).toContain(`<code>${key}</code>`);
      for (const name of methodDocs[method.name]!.errors) expect(html).toContain(`<code>${name}</code>`);
    }
    // Nothing to fetch: no scripts, no stylesheets or images from elsewhere (the page works offline).
    expect(html).not.toMatch(/<script|<link|<img|src=|https?:\/\//i);
  });
});

describe("documented outputs", () => {
  it("match what every method really answers (strict: no undocumented fields)", async () => {
    const { app } = testApp(db);
    const [alice, bob, carol] = [unique("did:plc:docsa"), unique("did:plc:docsb"), unique("did:plc:docsc")];
    const exercised = new Set<string>();
    const call = async (did: string, method: string, args: Parameters<typeof xrpc>[3]) => {
      const result = await xrpc(app, did, method, args);
      expect(result.status, `${method}: ${JSON.stringify(result.body)}`).toBe(200);
      const output = methodDocs[method]!.output as z.ZodType;
      const parsed = output.safeParse(result.body);
      expect(parsed.success, `${method}: ${parsed.error?.message}`).toBe(true);
      exercised.add(method);
      return result.body;
    };
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const keyPackage = async () => Buffer.from(await makeKeyPackage(bob)).toString("base64");

    await call(bob, "publishKeyPackage", { body: { keyPackage: await keyPackage(), cipherSuite: SUITE, expires } });
    await call(bob, "publishKeyPackages", {
      body: { keyPackages: [{ keyPackage: await keyPackage(), cipherSuite: SUITE, expires }] },
    });
    await call(bob, "getKeyPackageStats", { query: { cipherSuite: SUITE } });
    await call(alice, "getKeyPackages", { query: { dids: [bob, carol] } });
    const group = await TestGroup.create({ creatorDid: alice });
    const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
    const convo = await call(alice, "createConvo", {
      body: {
        groupId: group.groupIdHex,
        cipherSuite: SUITE,
        initialMembers: [bob],
        welcomeMessage: base64((await makeGroupWithCommit()).welcomeBytes),
        metadata: { name: "docs" },
      },
    });
    const convoId = convo.id as string;
    await call(alice, "getConvos", {});
    await call(alice, "getEpoch", { query: { convoId } });
    // A proposal first, so the one message getMessages returns shows messageType "proposal" is documented.
    await call(alice, "sendMessage", { body: { convoId, ciphertext: base64(await group.proposal()), epoch: 0 } });
    await call(alice, "addMembers", {
      body: { convoId, didList: [carol], commit: base64(await group.commit()), epoch: 0 },
    });
    await call(alice, "getMessages", { query: { convoId, limit: "1" } });
    await call(alice, "getCommits", { query: { convoId, fromEpoch: "0" } });
    await call(bob, "getWelcome", { query: { convoId } });
    await call(bob, "confirmWelcome", { body: { convoId, success: true } });
    await call(bob, "updateCursor", { body: { convoId, cursor: "1" } });
    await call(carol, "leaveConvo", { body: { convoId } });
    await call(bob, "registerDevice", { body: { deviceId: "phone", name: "Bob's phone" } });
    await call(bob, "registerDevice", { body: { deviceId: "laptop" } });
    await call(bob, "revokeDevice", { body: { deviceId: "laptop" } });
    await call(bob, "getDevices", {});
    // A roster-checked conversation: processCommit and getGroupInfo.
    const [aliceDevice, carolDevice] = [{ did: alice, deviceId: "" }, { did: carol, deviceId: "" }];
    const roster = await RosterGroup.create(aliceDevice);
    const checked = await call(alice, "createConvo", {
      body: { groupId: roster.groupIdHex, cipherSuite: SUITE, groupInfo: base64(await roster.groupInfo(aliceDevice)) },
    });
    const bundle = await roster.commit(aliceDevice, { add: [carolDevice] });
    await call(alice, "processCommit", {
      body: {
        convoId: checked.id,
        epoch: bundle.epoch,
        commit: base64(bundle.commit),
        groupInfo: base64(bundle.groupInfo),
        welcomeMessage: base64(bundle.welcome!),
        keyPackageHashes: bundle.keyPackageHashes,
      },
    });
    await call(carol, "getGroupInfo", { query: { convoId: checked.id } });

    const jsonMethods = methods.filter((method) => !("encoding" in methodDocs[method.name]!.output));
    expect([...exercised].sort()).toEqual(jsonMethods.map((method) => method.name).sort());
  });
});
