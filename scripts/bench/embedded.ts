import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "./server.js";

export interface EmbeddedStart {
  /** From spawning `npm start`'s node command to /health/ready answering 200. */
  startMs: number;
  /** Resident set size right after ready. */
  rssMb: number;
}

/**
 * `npm start` with no DATABASE_URL: the embedded PGlite default, in a new data directory (first start:
 * initdb and migrations) and then again on the same directory (a restart). Reports each start's time
 * to ready and RSS right after it.
 */
export async function measureEmbeddedStart(): Promise<{ first: EmbeddedStart; restart: EmbeddedStart }> {
  const dir = await mkdtemp(join(tmpdir(), "mls-bench-pglite-"));
  try {
    const once = async (): Promise<EmbeddedStart> => {
      const began = performance.now();
      const server = await startServer({
        DATABASE_URL: undefined,
        DATABASE_DRIVER: undefined,
        PGLITE_DIR: join(dir, "data"),
        LOG_LEVEL: "error",
      });
      try {
        const startMs = performance.now() - began;
        return { startMs, rssMb: (await server.rss()) / 2 ** 20 };
      } finally {
        await server.stop();
      }
    };
    const first = await once();
    return { first, restart: await once() };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
