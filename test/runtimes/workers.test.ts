/**
 * The Workers entry (`src/entry/workers.ts`) in workerd under `wrangler dev`, reaching PostgreSQL
 * through the local Hyperdrive binding: the smoke scenario, one cron-triggered cleanup, and a rate
 * limit that holds across requests (its counts live per isolate, not per request).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { promisify } from "node:util";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { testDatabase, unique } from "../helpers/context.js";
import { freePort } from "../setup/postgres.js";
import { ROOT, startServer, type RunningServer } from "./server.js";
import { client, smokeScenario } from "./smoke.js";

const secret = crypto.randomUUID();
/** Above what any one caller of the smoke scenario sends; the window outlasts the whole run. */
const PER_DID = 120;
const WRANGLER = join(ROOT, "node_modules/.bin/wrangler");

/** Hyperdrive's local connection string must carry a password; with trust auth any will do. */
function withPassword(url: string): string {
  const parsed = new URL(url);
  if (!parsed.password) parsed.password = "unused";
  return parsed.toString();
}

const wranglerEnv = {
  CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE: withPassword(inject("databaseUrl")),
  // No login, no telemetry, no update check: nothing leaves this machine.
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_HIDE_BANNER: "true",
};

/**
 * Bundles the Worker exactly as `wrangler deploy` would, then serves that bundle with `wrangler dev`
 * from a scratch directory. `wrangler dev` on the sources would watch the work tree and reload (and
 * at times crash) whenever a file changes during the run.
 */
async function startWorker(dir: string): Promise<RunningServer> {
  await promisify(execFile)(WRANGLER, ["deploy", "--dry-run", "--outdir", join(dir, "build")], {
    cwd: ROOT,
    env: { ...process.env, ...wranglerEnv },
  });
  const config = await readFile(join(ROOT, "wrangler.toml"), "utf8");
  await writeFile(join(dir, "wrangler.toml"), config.replace(/^main = .*$/m, 'main = "build/workers.js"'));

  const port = await freePort();
  return startServer({
    command: WRANGLER,
    args: [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--test-scheduled",
      "--var",
      `DEV_JWT_SECRET:${secret}`,
      "--var",
      `RATE_LIMIT_PER_DID:${PER_DID}`,
      "--var",
      "RATE_LIMIT_WINDOW_SECONDS:3600",
    ],
    cwd: dir,
    env: wranglerEnv,
    port,
    startTimeoutMs: 120_000,
  });
}

describe("Cloudflare Workers runtime (wrangler dev, workerd) over HTTP", () => {
  let server: RunningServer;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mls-worker-"));
    server = await startWorker(dir);
  }, 180_000);
  afterAll(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  smokeScenario(() => ({ baseUrl: server.baseUrl, secret }));

  describe("state kept per isolate", () => {
    it("a caller's rate limit counts across requests and fires at RATE_LIMIT_PER_DID + 1", async () => {
      const api = client({ baseUrl: server.baseUrl, secret });
      const caller = unique("did:plc:limited");
      const statuses: number[] = [];
      for (let sent = 0; sent < PER_DID; sent += 10) {
        const batch = await Promise.all(Array.from({ length: 10 }, () => api.get(caller, "getConvos")));
        statuses.push(...batch.map((reply) => reply.status));
      }
      expect(statuses).toEqual(Array(PER_DID).fill(200));
      const over = await api.get(caller, "getConvos");
      expect(over.status, JSON.stringify(over.body)).toBe(429);
      expect(over.body.error).toBe("RateLimitExceeded");
      expect(Number(over.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
      expect((await api.get(unique("did:plc:other"), "getConvos")).status).toBe(200);
    });
  });

  describe("cron trigger", () => {
    const db = testDatabase(2);
    afterAll(() => db.close());

    it("a scheduled run removes expired idempotency entries and keeps live ones", async () => {
      const caller = unique("did:plc:cron");
      await db.query(
        `INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
         SELECT $1, 'blue.catbird.mls.sendMessage', key, repeat('a', 64), 200, '{}', now() - interval '2 days', expires_at
           FROM (VALUES ('expired', now() - interval '1 minute'), ('live', now() + interval '1 hour')) AS rows (key, expires_at)`,
        [caller],
      );
      const fired = await fetch(`${server.baseUrl}/__scheduled?${new URLSearchParams({ cron: "*/5 * * * *" })}`);
      expect(fired.status, await fired.text()).toBe(200);
      const left = await db.query<{ key: string }>("SELECT key FROM idempotency_keys WHERE caller_did = $1", [caller]);
      expect(left.map((row) => row.key)).toEqual(["live"]);
      await expect.poll(() => server.output()).toMatch(/"message":"cleanup","cron":"\*\/5 \* \* \* \*","ran":true/);
    });
  });
});
