import { readdir, readFile } from "node:fs/promises";
import type { Migration } from "./migrate.js";

const MIGRATIONS_DIR = new URL("../../db/migrations/", import.meta.url);

/** Reads `db/migrations/*.sql` from disk (Node and Deno; Workers migrate before deploying). */
export async function readMigrations(dir: URL = MIGRATIONS_DIR): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((name) => /^\d+_.+\.sql$/.test(name)).sort();
  return Promise.all(names.map(async (name) => ({ name, sql: await readFile(new URL(name, dir), "utf8") })));
}
