/**
 * A database refusing connections for lack of slots (SQLSTATE 53300: more pooled connections across instances than
 * max_connections, or a role's CONNECTION LIMIT) is unavailable, like one that is down: 503 NotReady, never a 500.
 */
import postgres from "postgres";
import { afterAll, expect, inject, it } from "vitest";
import { DatabaseUnavailableError } from "../../src/db/driver.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { unique } from "../helpers/context.js";

const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
const role = unique("mls_no_slots_");
afterAll(async () => {
  await admin.unsafe(`DROP ROLE IF EXISTS ${role}`);
  await admin.end();
});

it("maps 'too many connections' (53300) to DatabaseUnavailableError", async () => {
  // The limit is checked after authentication: with a password, so that password servers (embedded) get that far.
  await admin.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'no-slots' CONNECTION LIMIT 0`);
  const url = new URL(inject("adminUrl"));
  url.username = role;
  url.password = "no-slots";
  const db = createPostgresDatabase(url.toString(), { max: 1 });
  try {
    const outcome = await db.query("SELECT 1").catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(DatabaseUnavailableError);
  } finally {
    await db.close();
  }
});
