/**
 * pgbench scripts for the baselines. The reads run the server's own SQL (the very constants the services
 * execute); the send runs the frozen one-message-per-transaction reference (referenceSend.ts), so the
 * baseline stays what one message per commit can do on this database.
 */
import { DEFAULT_MAX_PAGE_BYTES } from "../../src/config.js";
import { MESSAGE_PAGE_SQL } from "../../src/services/messagePage.js";
import { ADVISORY_LOCK } from "../../src/db/advisoryLocks.js";
import { CHANNEL } from "../../src/events/bus.js";
import { SEND_BATCH_SQL } from "../../src/services/sendBatch.js";
import { REFERENCE_SEND_SQL } from "./referenceSend.js";

/** Replaces $1..$n with pgbench expressions (highest first, so $1 never eats the start of $10). */
function bind(sql: string, values: string[]): string {
  let bound = sql;
  for (let i = values.length; i >= 1; i--) bound = bound.replaceAll(`$${i}`, `(${values[i - 1]!})`);
  // pgbench reads one command per line unless it ends with a semicolon
  return `${bound.replace(/\s*\n\s*/g, " ")};`;
}

/** A SQL text literal; colons become chr(58) because pgbench reads `:name` as one of its variables. */
const text = (value: string) =>
  value
    .split(":")
    .map((part) => `'${part}'`)
    .join(" || chr(58) || ");

const CIPHERTEXT = `decode(repeat('07', 160), 'hex')`;
const HASH = `'${"ab".repeat(32)}'`;

/**
 * One sendMessage with an idempotency key, one message per transaction: the reference statement that
 * claims the key, stores the message and its event and stores the answer, in its own implicit transaction.
 */
export function sendMessageScript(target: { convos: number } | { hot: true }): string {
  const convo = "hot" in target ? `'bench-hot'` : `'bench-' || CAST(:c AS int)`;
  const sender = "hot" in target ? text("did:plc:benchhot") : `${text("did:plc:bench")} || CAST(:c AS int)`;
  const key = `'k' || CAST(:k AS bigint)`;
  return [
    "hot" in target ? "" : `\\set c random(1, ${target.convos})`,
    `\\set k random(1, 1000000000000000)`,
    bind(REFERENCE_SEND_SQL, [
      convo,
      sender,
      "0",
      CIPHERTEXT,
      key,
      "now()",
      "gen_random_uuid()::text",
      "NULL",
      `'app'`,
      `''`,
      "false",
      `'blue.catbird.mls.sendMessage'`,
      HASH,
      "now() + interval '1 day'",
      `'10000ms'`,
    ]),
  ]
    .filter(Boolean)
    .join("\n");
}

/**
 * The server's own batch statement (group commit) storing `items` keyed sends of 160 bytes, each to a
 * random conversation (or all to the hot one): what the server's batches cost the database at the
 * batch size it reached, without HTTP. Like the server's, it notifies the conversations it wrote.
 */
export function sendBatchScript(target: { convos: number } | { hot: true }, items: number): string {
  const n = "hot" in target ? `'hot'` : `(1 + floor(random() * ${target.convos})::int)::text`;
  const item = `jsonb_build_object('n', g - 1, 'c', 'bench-' || r, 's', ${text("did:plc:bench")} || r, 'd', '', 'e', 0,
    'id', gen_random_uuid()::text, 't', 'app', 'g', NULL, 'o', true, 'k', gen_random_uuid()::text, 'h', ${HASH},
    'x', now() + interval '1 day', 'off', (g - 1) * 160, 'len', 160)`;
  return bind(SEND_BATCH_SQL, [
    `(SELECT jsonb_agg(${item})::text FROM (SELECT g, ${n} AS r FROM generate_series(1, ${items}) AS g) i)`,
    `decode(repeat('07', ${160 * items}), 'hex')`,
    "now()",
    `'blue.catbird.mls.sendMessage'`,
    String(ADVISORY_LOCK.idempotencyKey),
    `'${CHANNEL}'`,
    `'pgbench'`,
  ]);
}

/** One getMessages page (50) at a random position: the one statement that checks membership and builds the page's JSON. */
export function readMessagesScript(convoId: string, did: string, size: number): string {
  return [
    `\\set s random(0, ${Math.max(0, size - 50)})`,
    bind(MESSAGE_PAGE_SQL, [text(convoId), text(did), ":s", "50", String(DEFAULT_MAX_PAGE_BYTES), "NULL"]),
  ].join("\n");
}
