/**
 * pgbench scripts that run the server's own SQL (the very constants the services execute), so the
 * baseline is what this database can do with the same statements and the same transaction shape.
 */
import { STORE_ANSWER_SQL, CLAIM_KEY_SQL } from "../../src/services/idempotencyKeys.js";
import { ACTIVE_MEMBER_SQL } from "../../src/services/membership.js";
import { LIST_MESSAGES_SQL, SEND_MESSAGE_SQL } from "../../src/services/messages.js";

/** Replaces $1..$n with pgbench expressions (highest first, so $1 never eats the start of $10). */
function bind(sql: string, values: string[]): string {
  let bound = sql;
  for (let i = values.length; i >= 1; i--) bound = bound.replaceAll(`$${i}`, `(${values[i - 1]!})`);
  // pgbench reads one command per line unless it ends with a semicolon
  return `${bound.replace(/\s*\n\s*/g, " ")};`;
}

/** A SQL text literal; colons become chr(58) because pgbench reads `:name` as one of its variables. */
const text = (value: string) => value.split(":").map((part) => `'${part}'`).join(" || chr(58) || ");

const CIPHERTEXT = `decode(repeat('07', 160), 'hex')`;
const HASH = `'${"ab".repeat(32)}'`;
const ANSWER = `'{"messageId":"00000000-0000-0000-0000-000000000000","seq":1,"epoch":0,"receivedAt":"2026-01-01T00:00:00.000Z"}'`;

/**
 * One sendMessage with an idempotency key, as the server runs it: claim the key, store the message
 * and its event in one statement, store the answer, all in one transaction.
 */
export function sendMessageScript(target: { convos: number } | { hot: true }): string {
  const convo = "hot" in target ? `'bench-hot'` : `'bench-' || CAST(:c AS int)`;
  const sender = "hot" in target ? text("did:plc:benchhot") : `${text("did:plc:bench")} || CAST(:c AS int)`;
  const scope = [sender, `'blue.catbird.mls.sendMessage'`, `'k' || CAST(:k AS bigint)`];
  return [
    "hot" in target ? "" : `\\set c random(1, ${target.convos})`,
    `\\set k random(1, 1000000000000000)`,
    "BEGIN;",
    bind(CLAIM_KEY_SQL, [...scope, HASH, "now()", "now() + interval '1 day'", `'10000ms'`]),
    bind(SEND_MESSAGE_SQL, [convo, sender, "0", CIPHERTEXT, `'k' || CAST(:k AS bigint)`, "now()", "gen_random_uuid()::text", "NULL"]),
    bind(STORE_ANSWER_SQL, [...scope, "200", ANSWER]),
    "COMMIT;",
  ]
    .filter(Boolean)
    .join("\n");
}

/** One getMessages page (50) at a random position: the membership check, then the page. */
export function readMessagesScript(convoId: string, did: string, size: number): string {
  return [
    `\\set s random(0, ${Math.max(0, size - 50)})`,
    bind(ACTIVE_MEMBER_SQL, [text(convoId), text(did)]),
    bind(LIST_MESSAGES_SQL, [text(convoId), ":s", "51"]),
  ].join("\n");
}
