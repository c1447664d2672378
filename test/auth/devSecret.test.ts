/** The Node entry's development secret: generated for local use, never for a server with a SERVICE_DID unless allowed. */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { devSecret } from "../../src/entry/dev-secret.js";

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mls-dev-secret-"));
  dirs.push(dir);
  return dir;
}

describe("devSecret", () => {
  it("generates one secret per data directory when no SERVICE_DID is set", async () => {
    const dir = await dataDir();
    const secret = await devSecret({ PGLITE_DIR: dir });
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(await devSecret({ PGLITE_DIR: dir })).toBe(secret);
  });

  it("generates none when SERVICE_DID is set, unless ALLOW_DEV_TOKENS is true", async () => {
    const dir = await dataDir();
    expect(await devSecret({ PGLITE_DIR: dir, SERVICE_DID: "did:web:mls.example.com" })).toBeUndefined();
    expect(
      await devSecret({ PGLITE_DIR: dir, SERVICE_DID: "did:web:mls.example.com", ALLOW_DEV_TOKENS: "false" }),
    ).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
    const allowed = await devSecret({
      PGLITE_DIR: dir,
      SERVICE_DID: "did:web:mls.example.com",
      ALLOW_DEV_TOKENS: "true",
    });
    expect(allowed).toMatch(/^[0-9a-f]{64}$/);
  });

  it("passes an explicit DEV_JWT_SECRET through (the app still refuses it beside SERVICE_DID unless allowed)", async () => {
    const secret = "explicit-secret-0123456789";
    expect(await devSecret({ DEV_JWT_SECRET: secret, SERVICE_DID: "did:web:mls.example.com" })).toBe(secret);
  });
});
