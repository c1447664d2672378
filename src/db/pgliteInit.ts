import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The child: opening PGlite on an empty data directory runs initdb there; then it closes and exits. */
const INIT_SCRIPT = `
const [pglite, dataDir, options] = process.argv.slice(1);
try {
  const { PGlite } = await import(pglite);
  await (await PGlite.create(dataDir, JSON.parse(options))).close();
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
`;

/**
 * Creates the data directory `dataDir` (initdb) in a child process unless it holds a database already.
 * PGlite's initdb runs a second Postgres instance, copies its whole WASM memory and moves the new
 * directory through a tar in memory: ~450 MB that, done in the server's process, stayed resident after
 * start (garbage until a major GC that an idle server may never run, then kept by the C allocator).
 * Deno runs it in process (its executable takes other arguments).
 */
export async function initDataDir(dataDir: string, options: { startParams: string[]; initDbStartParams: string[] }) {
  if ("Deno" in globalThis || existsSync(join(dataDir, "PG_VERSION"))) return;
  const args = ["--input-type=module", "--eval", INIT_SCRIPT];
  args.push(import.meta.resolve("@electric-sql/pglite"), dataDir, JSON.stringify(options));
  await new Promise<void>((resolve, reject) =>
    execFile(process.execPath, args, (error, _stdout, stderr) => {
      if (!error) return resolve();
      const reason =
        stderr
          .trim()
          .split("\n")
          .findLast((line) => line.trim()) ?? `exit code ${error.code}`;
      reject(new Error(`initdb of the PGlite data directory ${dataDir} failed: ${reason}`));
    }),
  );
}
