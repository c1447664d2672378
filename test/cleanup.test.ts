/**
 * The cleanup job on a PostgreSQL database of its own (created from `adminUrl`), so its counts are
 * exact and its advisory lock meets no other test file's: what is past its time goes, with a count
 * per kind; everything live stays; two runs never overlap; `npm run cleanup` prints the counts.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import postgres from "postgres";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import type { Database } from "../src/db/driver.js";
import { migrate } from "../src/db/migrate.js";
import { readMigrations } from "../src/db/migrations-fs.js";
import { createPostgresDatabase } from "../src/db/postgres.js";
import { runCleanup, type CleanupOptions } from "../src/jobs/cleanup.js";
import { randomGroupId, testApp, unique } from "./helpers/context.js";
import { holdRowLock } from "./helpers/rowLock.js";
import { clientFor, outcome } from "./helpers/client.js";
import { ROOT } from "./runtimes/server.js";

const SECOND = 1000;
const DAY = 86_400 * SECOND;
const GRACE_SECONDS = 300;
const RETENTION_DAYS = 30;
const TTL_DAYS = 7;

const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
const name = unique("mls_cleanup_");
const url = new URL(inject("adminUrl"));
url.pathname = `/${name}`;
let db: Database;

beforeAll(async () => {
  await admin.unsafe(`CREATE DATABASE ${name}`);
  db = createPostgresDatabase(url.toString(), { max: 5 });
  await migrate(db, await readMigrations());
});

afterAll(async () => {
  await db?.close();
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

beforeEach(async () => {
  await db.exec("TRUNCATE conversations, idempotency_keys, key_packages, seen_tokens, welcome_payloads CASCADE");
});

const ago = (now: Date, ms: number) => new Date(now.getTime() - ms);
const later = (now: Date, ms: number) => new Date(now.getTime() + ms);
const options = (now: Date, extra: Partial<CleanupOptions> = {}): CleanupOptions => ({
  now,
  welcomeGraceSeconds: GRACE_SECONDS,
  welcomeTtlSeconds: TTL_DAYS * 86_400,
  retentionDays: RETENTION_DAYS,
  ...extra,
});
const hash = (label: string) => label.repeat(64).slice(0, 64);

async function conversation(createdAt: Date): Promise<string> {
  const id = unique("convo-");
  await db.query(
    `INSERT INTO conversations (id, group_id, creator_did, cipher_suite, created_at) VALUES ($1, $2, 'did:plc:creator', 'suite', $3)`,
    [id, randomGroupId(), createdAt],
  );
  return id;
}

async function idempotencyEntry(key: string, expiresAt: Date): Promise<void> {
  await db.query(
    `INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
     VALUES ('did:plc:caller', 'blue.catbird.mls.sendMessage', $1, $2, 200, '{}', $3, $4)`,
    [key, hash("a"), ago(expiresAt, DAY), expiresAt],
  );
}

async function keyPackage(owner: string, label: string, expiresAt: Date): Promise<void> {
  await db.query(
    `INSERT INTO key_packages (owner_did, cipher_suite, key_package, hash, expires_at, created_at, signature_key)
     VALUES ($1, 'suite', $2, $3, $4, $5, '\\x00')`,
    [owner, new Uint8Array([1, 2, 3]), hash(label), expiresAt, ago(expiresAt, DAY)],
  );
}

interface WelcomeRow {
  state: "available" | "in_flight" | "consumed" | "expired";
  createdAt: Date;
  fetchedAt?: Date;
  confirmedAt?: Date;
  keyPackageHash?: string;
  /** A welcome_payloads hash the row references instead of holding its own bytes. */
  payloadHash?: string;
}

async function welcomePayload(label: string, usedAt: Date): Promise<string> {
  await db.query(`INSERT INTO welcome_payloads (hash, welcome, used_at) VALUES ($1, $2, $3)`, [
    hash(label),
    new Uint8Array([8]),
    usedAt,
  ]);
  return hash(label);
}

async function welcome(convoId: string, recipient: string, row: WelcomeRow): Promise<string> {
  const id = unique("welcome-");
  await db.query(
    `INSERT INTO welcome_messages (id, convo_id, recipient_did, welcome, key_package_hash, state, created_at, fetched_at, confirmed_at, payload_hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [
      id,
      convoId,
      recipient,
      row.payloadHash ? null : new Uint8Array([9]),
      row.keyPackageHash ?? null,
      row.state,
      row.createdAt,
      row.fetchedAt ?? null,
      row.confirmedAt ?? null,
      row.payloadHash ?? null,
    ],
  );
  return id;
}

async function message(convoId: string, seq: number, createdAt: Date): Promise<void> {
  await db.query(
    `INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at)
     VALUES ($1, $2, $3, 'did:plc:creator', 'app', 0, $4, $5)`,
    [unique("msg-"), convoId, seq, new Uint8Array([7]), createdAt],
  );
}

async function event(convoId: string, seq: number, createdAt: Date): Promise<void> {
  await db.query(`INSERT INTO events (convo_id, seq, kind, created_at) VALUES ($1, $2, 'membership', $3)`, [
    convoId,
    seq,
    createdAt,
  ]);
}

async function seenToken(jti: string, expiresAt: Date): Promise<void> {
  await db.query(`INSERT INTO seen_tokens (issuer_did, jti, expires_at) VALUES ('did:plc:issuer', $1, $2)`, [
    jti,
    expiresAt,
  ]);
}

const column = async <T>(sql: string, params: unknown[] = []) =>
  (await db.query<{ value: T }>(sql, params)).map((row) => row.value);

describe("runCleanup", () => {
  it("removes what is past its time, one count per kind, and leaves everything live", async () => {
    const now = new Date();
    const convoId = await conversation(ago(now, 60 * DAY));

    await idempotencyEntry("expired", ago(now, SECOND));
    await idempotencyEntry("expires-now", now);
    await idempotencyEntry("live", later(now, 3600 * SECOND));

    await keyPackage("did:plc:kp", "1", ago(now, 60 * SECOND));
    await keyPackage("did:plc:kp", "2", later(now, DAY));
    // The key package behind the welcome that expires below: expiry consumes it.
    await keyPackage("did:plc:stale", "3", later(now, DAY));

    const pastGrace = await welcome(convoId, "did:plc:stale", {
      state: "in_flight",
      createdAt: ago(now, DAY),
      fetchedAt: ago(now, (GRACE_SECONDS + 1) * SECOND),
      keyPackageHash: hash("3"),
    });
    const withinGrace = await welcome(convoId, "did:plc:fetching", {
      state: "in_flight",
      createdAt: ago(now, DAY),
      fetchedAt: ago(now, 10 * SECOND),
    });
    const neverFetched = await welcome(convoId, "did:plc:waiting", {
      state: "available",
      createdAt: ago(now, (TTL_DAYS - 1) * DAY),
    });
    const pastTtl = await welcome(convoId, "did:plc:away", {
      state: "available",
      createdAt: ago(now, (TTL_DAYS + 1) * DAY),
    });
    const consumedLongAgo = await welcome(convoId, "did:plc:joined-long-ago", {
      state: "consumed",
      createdAt: ago(now, 40 * DAY),
      fetchedAt: ago(now, 40 * DAY),
      confirmedAt: ago(now, (RETENTION_DAYS + 1) * DAY),
    });
    const expiredLongAgo = await welcome(convoId, "did:plc:lapsed", {
      state: "expired",
      createdAt: ago(now, 40 * DAY),
      fetchedAt: ago(now, (RETENTION_DAYS + 2) * DAY),
    });
    const consumedRecently = await welcome(convoId, "did:plc:joined", {
      state: "consumed",
      createdAt: ago(now, 2 * DAY),
      fetchedAt: ago(now, 2 * DAY),
      confirmedAt: ago(now, DAY),
    });

    await message(convoId, 1, ago(now, (RETENTION_DAYS + 1) * DAY));
    await message(convoId, 2, ago(now, (RETENTION_DAYS - 1) * DAY));
    await event(convoId, 1, ago(now, (RETENTION_DAYS + 1) * DAY));
    await event(convoId, 2, ago(now, DAY));

    await seenToken("expired", ago(now, SECOND));
    await seenToken("live", later(now, 60 * SECOND));

    expect(await runCleanup(db, options(now))).toEqual({
      ran: true,
      idempotencyKeys: 2,
      keyPackages: 1,
      keyPackageKeys: 0,
      externalJoins: 0,
      welcomesExpired: 2,
      welcomesDeleted: 2,
      welcomePayloads: 0,
      messages: 1,
      events: 1,
      seenTokens: 1,
    });

    expect(await column("SELECT key AS value FROM idempotency_keys")).toEqual(["live"]);
    expect(await column("SELECT hash AS value FROM key_packages WHERE consumed_at IS NULL ORDER BY hash")).toEqual([
      hash("2"),
    ]);
    expect(await column("SELECT hash AS value FROM key_packages WHERE consumed_at IS NOT NULL")).toEqual([hash("3")]);
    const welcomes = await db.query<{ id: string; state: string }>("SELECT id, state FROM welcome_messages");
    expect(Object.fromEntries(welcomes.map((row) => [row.id, row.state]))).toEqual({
      [pastGrace]: "expired",
      [withinGrace]: "in_flight",
      [neverFetched]: "available",
      [pastTtl]: "expired",
      [consumedRecently]: "consumed",
    });
    expect(welcomes.map((row) => row.id)).not.toContain(consumedLongAgo);
    expect(welcomes.map((row) => row.id)).not.toContain(expiredLongAgo);
    expect(await column("SELECT seq AS value FROM messages")).toEqual([2]);
    expect(await column("SELECT seq AS value FROM events")).toEqual([2]);
    expect(await column("SELECT jti AS value FROM seen_tokens")).toEqual(["live"]);
    expect(await column("SELECT count(*) AS value FROM conversations")).toEqual([1]);

    // Nothing left to do: a second run counts zero everywhere.
    expect(await runCleanup(db, options(now))).toEqual({
      ran: true,
      idempotencyKeys: 0,
      keyPackages: 0,
      keyPackageKeys: 0,
      externalJoins: 0,
      welcomesExpired: 0,
      welcomesDeleted: 0,
      welcomePayloads: 0,
      messages: 0,
      events: 0,
      seenTokens: 0,
    });
  });

  it("deletes welcome payloads no row references once unused past retention, and keeps referenced ones", async () => {
    const now = new Date();
    const convoId = await conversation(ago(now, DAY));
    const old = ago(now, (RETENTION_DAYS + 1) * DAY);
    await welcomePayload("1", old);
    const recentOrphan = await welcomePayload("2", ago(now, DAY));
    const referenced = await welcomePayload("3", old);
    const retiredWith = await welcomePayload("4", old);
    await welcome(convoId, "did:plc:a", { state: "available", createdAt: ago(now, DAY), payloadHash: referenced });
    // Its only row goes past retention in this run; the payload goes with it.
    await welcome(convoId, "did:plc:b", { state: "expired", createdAt: old, payloadHash: retiredWith });
    const legacy = await welcome(convoId, "did:plc:c", { state: "available", createdAt: ago(now, DAY) });

    const result = await runCleanup(db, options(now, { batchSize: 1 }));
    expect(result).toMatchObject({ welcomesDeleted: 1, welcomePayloads: 2 });
    expect(await column("SELECT hash AS value FROM welcome_payloads ORDER BY hash")).toEqual([recentOrphan, referenced]);
    expect(await column("SELECT id AS value FROM welcome_messages ORDER BY recipient_did")).toHaveLength(2);
    expect(await column("SELECT get_byte(welcome, 0) AS value FROM welcome_messages WHERE id = $1", [legacy])).toEqual([9]);
  });

  it("deletes external joins once past retention and the rejoin cooldown (they only time the cooldown), in batches", async () => {
    const now = new Date();
    const convoId = await conversation(ago(now, 60 * DAY));
    const join = (deviceId: string, joinedAt: Date) =>
      db.query(`INSERT INTO external_joins (convo_id, did, device_id, joined_at) VALUES ($1, 'did:plc:joiner', $2, $3)`, [
        convoId,
        deviceId,
        joinedAt,
      ]);
    for (let i = 0; i < 3; i++) await join(`old-${i}`, ago(now, 60 * DAY));
    await join("recent", ago(now, DAY));
    // Past retention, but a (long) cooldown counted from it has not ended.
    await join("cooling", ago(now, 40 * DAY));

    const result = await runCleanup(db, options(now, { batchSize: 2, rejoinCooldownSeconds: 50 * 86_400 }));
    expect(result).toMatchObject({ ran: true, externalJoins: 3 });
    expect(await column("SELECT device_id AS value FROM external_joins ORDER BY device_id")).toEqual([
      "cooling",
      "recent",
    ]);
    // With the usual cooldown (shorter than retention), retention decides.
    expect(await runCleanup(db, options(now, { rejoinCooldownSeconds: 60 }))).toMatchObject({ externalJoins: 1 });
    expect(await column("SELECT device_id AS value FROM external_joins")).toEqual(["recent"]);
  });

  it("deletes in batches until nothing expired is left", async () => {
    const now = new Date();
    for (let i = 0; i < 7; i++) await idempotencyEntry(`expired-${i}`, ago(now, SECOND));
    await idempotencyEntry("live", later(now, 60 * SECOND));
    const result = await runCleanup(db, options(now, { batchSize: 3 }));
    expect(result).toMatchObject({ ran: true, idempotencyKeys: 7 });
    expect(await column("SELECT key AS value FROM idempotency_keys")).toEqual(["live"]);
  });

  it("a second run while one is working does nothing: the lease keeps them apart", async () => {
    const now = new Date();
    await idempotencyEntry("expired", ago(now, SECOND));
    await seenToken("expired", ago(now, SECOND));

    // Hold the expired entry's row lock so the first run stops, holding its lease, at that delete.
    const holder = holdRowLock(db, "SELECT 1 FROM idempotency_keys WHERE key = 'expired' FOR UPDATE");
    try {
      await holder.held;
      const first = runCleanup(db, options(now));
      await waitForLockWait();
      expect(await runCleanup(db, options(now))).toEqual({ ran: false, reason: "another cleanup is running" });
      holder.release();
      expect(await first).toMatchObject({ ran: true, idempotencyKeys: 1, seenTokens: 1 });
    } finally {
      holder.release();
      await holder.done;
    }
  });

  it("works in short transactions: a failure in a late kind keeps the earlier kinds' work", async () => {
    const now = new Date();
    const convoId = await conversation(ago(now, DAY));
    await idempotencyEntry("expired", ago(now, SECOND));
    const stale = await welcome(convoId, "did:plc:stale", {
      state: "in_flight",
      createdAt: ago(now, DAY),
      fetchedAt: ago(now, (GRACE_SECONDS + 1) * SECOND),
    });
    await seenToken("expired", ago(now, SECOND));
    // The last kind fails: a trigger refuses deletes from seen_tokens.
    await db.exec(`CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION 'injected cleanup failure'; END $$;
                   CREATE TRIGGER refuse_delete BEFORE DELETE ON seen_tokens FOR EACH ROW EXECUTE FUNCTION refuse_delete();`);
    try {
      await expect(runCleanup(db, options(now))).rejects.toThrow("injected cleanup failure");
    } finally {
      await db.exec("DROP TRIGGER refuse_delete ON seen_tokens; DROP FUNCTION refuse_delete();");
    }
    expect(await column("SELECT key AS value FROM idempotency_keys")).toEqual([]);
    expect(await column("SELECT state AS value FROM welcome_messages WHERE id = $1", [stale])).toEqual(["expired"]);
    // The failed run gave its lease back: the next one runs and finishes the job.
    expect(await runCleanup(db, options(now))).toMatchObject({ ran: true, idempotencyKeys: 0, seenTokens: 1 });
  });

  it("stopped between batches, it has removed a prefix of each conversation: events before messages, oldest first", async () => {
    const now = new Date();
    const convoId = await conversation(ago(now, 40 * DAY));
    // Stored newest first, so the table's physical order is the reverse of seq.
    for (let seq = 10; seq >= 1; seq--) {
      const createdAt = ago(now, (39 - seq) * DAY);
      await db.query(
        `INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at)
         VALUES ($1, $2, $3, 'did:plc:creator', 'app', 0, '\\x01', $4)`,
        [unique("m-"), convoId, seq, createdAt],
      );
      await db.query(
        `INSERT INTO events (convo_id, seq, kind, message_seq, created_at) VALUES ($1, $2, 'message', $2, $3)`,
        [convoId, seq, createdAt],
      );
    }
    // Every message is past retention (30 days) up to seq 9; the run fails in its second message batch.
    await db.exec(`CREATE FUNCTION refuse_seq_5() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN IF OLD.seq = 5 THEN RAISE EXCEPTION 'injected cleanup failure'; END IF; RETURN OLD; END $$;
                   CREATE TRIGGER refuse_seq_5 BEFORE DELETE ON messages FOR EACH ROW EXECUTE FUNCTION refuse_seq_5();`);
    try {
      await expect(runCleanup(db, options(now, { batchSize: 3 }))).rejects.toThrow("injected cleanup failure");
    } finally {
      await db.exec("DROP TRIGGER refuse_seq_5 ON messages; DROP FUNCTION refuse_seq_5();");
    }
    const seqs = (table: string) =>
      db.query<{ seq: number }>(`SELECT seq FROM ${table} WHERE convo_id = $1 ORDER BY seq`, [convoId]);
    expect((await seqs("messages")).map((row) => row.seq)).toEqual([4, 5, 6, 7, 8, 9, 10]);
    // Every event of a message retention reached went first: none is left to point at a missing message.
    expect((await seqs("events")).map((row) => row.seq)).toEqual([10]);
  });

  it("holds no welcome lock for the whole run: getWelcome answers while cleanup waits in a later kind", async () => {
    const now = new Date();
    const convoId = await conversation(ago(now, DAY));
    const recipient = unique("did:plc:late");
    await db.query(
      `INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch) VALUES ($1, $2, $3, 1, 1, 0)`,
      [convoId, recipient, ago(now, DAY)],
    );
    await welcome(convoId, recipient, {
      state: "in_flight",
      createdAt: ago(now, DAY),
      fetchedAt: ago(now, (GRACE_SECONDS + 1) * SECOND),
    });
    await seenToken("expired", ago(now, SECOND));

    // Cleanup expires the welcome, then stops at the seen_tokens delete behind this row lock.
    const holder = holdRowLock(db, "SELECT 1 FROM seen_tokens WHERE jti = 'expired' FOR UPDATE");
    try {
      await holder.held;
      const run = runCleanup(db, options(now));
      await waitForLockWait("DELETE FROM seen_tokens");
      const { app } = testApp(db, { WELCOME_GRACE_SECONDS: String(GRACE_SECONDS) });
      let answered = false;
      const fetched = outcome(clientFor(app, recipient).getWelcome({ convoId })).finally(() => (answered = true));
      const blocked = waitForLockWait("welcome_messages", () => answered).then(
        () => "getWelcome waited for cleanup's lock",
      );
      expect(await Promise.race([fetched.then((result) => result.status), blocked])).toBe(410);
      holder.release();
      expect(await run).toMatchObject({ ran: true, welcomesExpired: 1, seenTokens: 1 });
    } finally {
      holder.release();
      await holder.done;
    }
  });

  it("runs started together remove each row once", async () => {
    const now = new Date();
    for (let i = 0; i < 20; i++) await idempotencyEntry(`expired-${i}`, ago(now, SECOND));
    const results = await Promise.all(Array.from({ length: 4 }, () => runCleanup(db, options(now))));
    const removed = results.reduce((sum, result) => sum + (result.ran ? result.idempotencyKeys : 0), 0);
    expect(removed).toBe(20);
    expect(results.some((result) => result.ran)).toBe(true);
  });
});

/** Waits until a statement of this database containing `text` is blocked on a lock (or `stop` says to give up). */
async function waitForLockWait(text = "DELETE FROM idempotency_keys", stop = () => false): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (stop()) return;
    const [row] = await db.query<{ waiting: number }>(
      `SELECT count(*) AS waiting FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'`,
      [text],
    );
    if ((row?.waiting ?? 0) > 0) return;
    if (Date.now() > deadline) throw new Error(`no statement with ${text} ever waited for a lock`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("npm run cleanup", () => {
  it("runs once against DATABASE_URL and prints the counts as JSON", async () => {
    const now = new Date();
    await idempotencyEntry("expired", ago(now, 60 * SECOND));
    await idempotencyEntry("live", later(now, 3600 * SECOND));
    await seenToken("expired", ago(now, 60 * SECOND));
    const { stdout } = await promisify(execFile)("npm", ["run", "--silent", "cleanup"], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: url.toString(), DATABASE_DRIVER: "postgres" },
    });
    expect(JSON.parse(stdout)).toEqual({
      ran: true,
      idempotencyKeys: 1,
      keyPackages: 0,
      keyPackageKeys: 0,
      externalJoins: 0,
      welcomesExpired: 0,
      welcomesDeleted: 0,
      welcomePayloads: 0,
      messages: 0,
      events: 0,
      seenTokens: 1,
    });
    expect(await column("SELECT key AS value FROM idempotency_keys")).toEqual(["live"]);
  });
});
