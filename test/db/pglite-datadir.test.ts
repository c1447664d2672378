/**
 * The embedded default on disk (`npm start` without DATABASE_URL): a new data directory is made by
 * initdb in a child process (so its scratch memory leaves with it), then opened here like an existing one.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgliteDatabase } from "../../src/db/pglite.js";

describe("PGlite data directory", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mls-pglite-dir-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is created on first open, runs with the small memory settings, and keeps its data across a reopen", async () => {
    const dataDir = join(dir, "data");
    const first = await createPgliteDatabase(dataDir);
    try {
      await first.exec("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)");
      const [settings] = await first.query<{ buffers: string; connections: string }>(
        "SELECT current_setting('shared_buffers') AS buffers, current_setting('max_connections') AS connections",
      );
      expect(settings).toEqual({ buffers: "8MB", connections: "10" });
    } finally {
      await first.close();
    }
    // initdb wrote the same settings into the directory's own configuration
    expect(await readFile(join(dataDir, "postgresql.conf"), "utf8")).toMatch(/^shared_buffers\s*=\s*'?8MB/m);

    const again = await createPgliteDatabase(dataDir);
    try {
      expect(await again.query("SELECT n FROM kept")).toEqual([{ n: 42 }]);
    } finally {
      await again.close();
    }
  });

  it("that cannot be created fails with one line naming it", async () => {
    const dataDir = join(dir, "no-such-parent", "data");
    const error = await createPgliteDatabase(dataDir).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`initdb of the PGlite data directory ${dataDir} failed: ENOENT`);
    expect((error as Error).message).not.toContain("\n");
  });
});
