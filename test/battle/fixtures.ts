/**
 * What every battle test starts from: a unique prefix `battle-<kind>-<8 hex>` carried by its DIDs and
 * conversation names, removal of everything under that prefix, and a conversation made over HTTP.
 */
import type { Input } from "mls-delivery-service/client";
import { expect, onTestFinished } from "vitest";
import type { Queryable } from "../../src/db/driver.js";
import { outcome } from "../helpers/client.js";
import { randomGroupId, unique } from "../helpers/context.js";
import { battleClient } from "./calls.js";
import { SUITE } from "./client.js";
import { guarantee } from "./report.js";

export interface Battle {
  /** `battle-<kind>-<8 hex>` */
  prefix: string;
  /** A DID under the prefix: `did:plc:battle-<kind>-<8 hex>-<name>`. */
  did(name: string): string;
}

export function battle(kind: string): Battle {
  const prefix = unique(`battle-${kind}-`);
  return { prefix, did: (name) => `did:plc:${prefix}-${name}` };
}

/** A battle for the running test: its prefix's rows are removed before it starts and after it ends. */
export async function enterBattle(db: Queryable, kind: string): Promise<Battle> {
  const entered = battle(kind);
  await removeBattleData(db, entered);
  onTestFinished(() => removeBattleData(db, entered));
  return entered;
}

/** The single number a `SELECT count(*) AS n ...` (or any one-value query named n) returns. */
export async function scalar(db: Queryable, text: string, params: unknown[]): Promise<number> {
  const [row] = await db.query<{ n: number | string | null }>(text, params);
  return Number(row?.n ?? 0);
}

/**
 * Removes every row a battle test left under its prefix. Conversations created by its DIDs take their
 * members, messages, events and welcomes with them (ON DELETE CASCADE).
 */
export async function removeBattleData(db: Queryable, { prefix }: Battle): Promise<void> {
  const didPrefix = `did:plc:${prefix}-`;
  const owned = (column: string, param = "$1") => `left(${column}, length(${param})) = ${param}`;
  await db.query(`DELETE FROM conversations WHERE ${owned("creator_did")} OR ${owned("id", "$2")}`, [
    didPrefix,
    prefix,
  ]);
  for (const [table, column] of [
    ["members", "did"],
    ["messages", "sender_did"],
    ["idempotency_keys", "caller_did"],
    ["key_packages", "owner_did"],
    ["welcome_messages", "recipient_did"],
  ] as const) {
    await db.query(`DELETE FROM ${table} WHERE ${owned(column)}`, [didPrefix]);
  }
}

/**
 * createConvo over HTTP to the server at `url`, through the typed client; the conversation's name is
 * `<prefix>-convo` (its id is the server's).
 */
export async function createConvo(
  url: string,
  { prefix }: Battle,
  creator: string,
  input: Partial<Input<"createConvo">> = {},
): Promise<{ id: string; name: string }> {
  const name = `${prefix}-convo`;
  const created = await outcome(
    battleClient(url, creator).createConvo({
      groupId: randomGroupId(),
      cipherSuite: SUITE,
      metadata: { name },
      ...input,
    }),
  );
  const { data, ...answer } = created;
  expect(created.status, guarantee(`createConvo succeeds (${JSON.stringify(data ?? answer)})`)).toBe(200);
  return { id: data!.id, name };
}
