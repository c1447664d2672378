/**
 * The same client in other runtimes: the smoke scenario (test/client/runtimes/scenario.ts) runs in Deno and in
 * workerd against the real Node server, and reports what it saw.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { start, type BattleServer } from "../battle/server.js";
import { randomGroupId, tokenFor } from "../helpers/context.js";
import { ROOT, startServer } from "../runtimes/server.js";
import { freePort } from "../setup/postgres.js";
import { newDid } from "./fixtures.js";
import type { SmokeInput } from "./runtimes/scenario.js";

let server: BattleServer;
beforeAll(async () => void (server = await start()));
afterAll(() => server?.stop());

async function smokeInput(): Promise<SmokeInput> {
  const [alice, bob] = [newDid("alice"), newDid("bob")];
  return {
    service: server.url,
    alice: { did: alice, token: await tokenFor(alice) },
    bob: { did: bob, token: await tokenFor(bob) },
    groupId: randomGroupId(),
  };
}

function expectReport(report: unknown, input: SmokeInput) {
  expect(report).toEqual({
    members: [input.alice.did, input.bob.did].sort(),
    seqs: [1, 1],
    replayed: [false, true],
    read: ["hello from the client"],
    refusal: { status: 404, error: "ConvoNotFound" },
    streamed: "hello from the client",
  });
}

describe("the client in other runtimes", () => {
  it("runs in Deno", async () => {
    const input = await smokeInput();
    const { stdout } = await promisify(execFile)(
      join(ROOT, "node_modules/.bin/deno"),
      ["run", "--allow-net", "--allow-env", "test/client/runtimes/deno.ts"],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH,
          SMOKE_INPUT: JSON.stringify(input),
          DENO_NO_UPDATE_CHECK: "1",
          DENO_NO_PROMPT: "1",
        },
      },
    );
    expectReport(JSON.parse(stdout), input);
  });

  it("runs in workerd, bundled for a neutral platform (no Node built-ins) and without nodejs_compat", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mls-client-worker-"));
    const worker = join(dir, "worker.js");
    const run = promisify(execFile);
    await run(
      join(ROOT, "node_modules/.bin/esbuild"),
      ["test/client/runtimes/worker.ts", "--bundle", "--platform=neutral", "--format=esm", `--outfile=${worker}`],
      { cwd: ROOT },
    );
    const port = await freePort();
    const workerd = await startServer({
      command: join(ROOT, "node_modules/.bin/wrangler"),
      args: ["dev", worker, "--no-bundle", "--name", "client-smoke", "--compatibility-date", "2026-04-20"].concat([
        "--ip",
        "127.0.0.1",
        "--port",
        String(port),
      ]),
      env: { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_HIDE_BANNER: "true" },
      cwd: dir,
      port,
      startTimeoutMs: 120_000,
    });
    try {
      const input = await smokeInput();
      const response = await fetch(workerd.baseUrl, { method: "POST", body: JSON.stringify(input) });
      expect(response.status, await response.clone().text()).toBe(200);
      expectReport(await response.json(), input);
    } finally {
      await workerd.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
