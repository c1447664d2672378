/**
 * A flood of forged service tokens against a real Node server process over HTTP: thousands of did:web
 * issuers (127.0.x.y names, all answered by one loopback host), each serving a 64 KB document of
 * `{"verificationMethod":[{},{},…]}`, each token with the right `aud`, a valid `exp` and 64 junk
 * signature bytes. The server must keep answering /health, answer every forged token with a 401 (or a
 * 429), and its memory must stay bounded. Its heap is capped well below `npm start`'s 1 GB so that a
 * server that keeps what it fetches dies within the flood.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../setup/postgres.js";
import { startServer, type RunningServer } from "../runtimes/server.js";
import { b64url, NSID, nowSeconds, SERVICE_DID } from "./identities.js";

const ISSUERS = Number(process.env.FLOOD_ISSUERS ?? 2000);
const CONCURRENCY = 16;
const DOCUMENT_BYTES = 64 * 1024;
const HEAP_MB = Number(process.env.FLOOD_HEAP_MB ?? 256);
const FLOOD_DEADLINE_MS = Number(process.env.FLOOD_DEADLINE_MS ?? 45_000);
/** What the flood may add to the server's peak resident memory. */
const MAX_GROWTH_BYTES = 80 * 1024 * 1024;

/** A did:web host for every 127.0.x.y: a 64 KB document of empty verification methods, naming the asking host's DID. */
async function junkDidHost(): Promise<Server> {
  const server = createServer((req, res) => {
    const did = `did:web:${(req.headers.host ?? "").replace(":", "%3A")}`;
    const head = `{"id":${JSON.stringify(did)},"verificationMethod":[`;
    const count = Math.floor((DOCUMENT_BYTES - head.length - 2) / 3);
    const body = `${head}${"{},".repeat(count - 1)}{}]}`;
    // Half with a Content-Length, half chunked: a size cap must hold for both.
    if (Math.random() < 0.5) {
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) }).end(body);
    } else {
      res.writeHead(200, { "Content-Type": "application/json" });
      for (let i = 0; i < body.length; i += 8192) res.write(body.slice(i, i + 8192));
      res.end();
    }
  });
  // Every loopback address: the issuers' names are 127.0.x.y.
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  return server;
}

function forgedToken(iss: string): string {
  const header = b64url(JSON.stringify({ alg: "ES256K", typ: "JWT" }));
  const payload = b64url(
    JSON.stringify({
      iss,
      aud: SERVICE_DID,
      exp: nowSeconds() + 60,
      iat: nowSeconds(),
      lxm: `${NSID}getConvos`,
      jti: randomBytes(8).toString("hex"),
    }),
  );
  return `${header}.${payload}.${b64url(randomBytes(64))}`;
}

async function memory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

describe("a flood of forged service tokens from thousands of did:web issuers", () => {
  let didHost: Server;
  let server: RunningServer;

  beforeAll(async () => {
    didHost = await junkDidHost();
    const port = await freePort();
    server = await startServer({
      command: process.execPath,
      args: [`--max-old-space-size=${HEAP_MB}`, "--import", "tsx", "src/entry/node.ts"],
      env: {
        DATABASE_URL: inject("databaseUrl"),
        PORT: String(port),
        HOST: "127.0.0.1",
        LOG_LEVEL: "error",
        MIGRATE_ON_START: "false",
        CLEANUP_INTERVAL_SECONDS: "0",
        SERVICE_DID,
        DEV_JWT_SECRET: "",
        DEV_TOKENS: "off",
        DID_WEB_ALLOW_PRIVATE: "true",
        // One client address sends the whole flood: the per-address limit would stop it before the
        // resolver is ever tested. That limit has its own test (limits.test.ts).
        RATE_LIMIT_XRPC_PER_IP: "0",
      },
      port,
    });
  }, 90_000);

  afterAll(async () => {
    await server?.stop();
    await new Promise((resolve) => didHost?.close(resolve));
  });

  it("keeps the server up and its memory bounded, answering every forged token 401 or 429", async () => {
    const pid = server.child.pid!;
    const before = await memory(pid);
    const port = (didHost.address() as AddressInfo).port;
    const issuers = Array.from({ length: ISSUERS }, (_, i) => `did:web:127.0.${1 + (i >> 8)}.${i & 255}%3A${port}`);

    const statuses = new Map<string, number>();
    const count = (status: string) => statuses.set(status, (statuses.get(status) ?? 0) + 1);
    let healthFailures = 0;
    let flooding = true;
    const health = (async () => {
      while (flooding) {
        const ok = await fetch(`${server.baseUrl}/health`, { signal: AbortSignal.timeout(5_000) }).then(
          (res) => res.ok,
          () => false,
        );
        if (!ok) healthFailures++;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();

    // A server in its death throes (collecting garbage near its heap limit) answers slowly: the flood
    // stops at a deadline rather than the test timing out. On a busy machine a healthy server may not
    // get through every issuer by then either: what counts is that it answered every request it got.
    const deadline = Date.now() + FLOOD_DEADLINE_MS;
    let next = 0;
    const worker = async () => {
      while (next < issuers.length && Date.now() < deadline) {
        const iss = issuers[next++]!;
        const res = await fetch(`${server.baseUrl}/xrpc/${NSID}getConvos`, {
          headers: { Authorization: `Bearer ${forgedToken(iss)}` },
          signal: AbortSignal.timeout(10_000),
        }).catch(() => undefined);
        if (!res) count("no answer");
        else {
          await res.arrayBuffer();
          count(String(res.status));
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    flooding = false;
    await health;

    const after = await memory(pid).catch(() => ({ rss: NaN, peak: NaN }));
    const answered = Object.fromEntries(statuses);
    const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);
    console.log(
      `flood of ${ISSUERS} (${issuers.length - next} not sent by the deadline): ${JSON.stringify(answered)}; server RSS ${mb(before.rss)} MB before, ` +
        `${mb(after.rss)} MB after, peak ${mb(after.peak)} MB; /health failures ${healthFailures}`,
    );
    expect(server.child.exitCode, server.output().slice(-2000)).toBeNull();
    expect(healthFailures).toBe(0);
    expect((await fetch(`${server.baseUrl}/health`)).status).toBe(200);
    expect(Object.keys(answered).filter((status) => status !== "401" && status !== "429")).toEqual([]);
    // Hundreds of documents fetched and refused (a server that keeps them dies after about 200 here).
    expect(answered["401"]).toBeGreaterThan(500);
    expect(after.peak - before.rss).toBeLessThan(MAX_GROWTH_BYTES);
  }, 120_000);
});
