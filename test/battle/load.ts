/**
 * Load for the attacks that break the server or its database mid-flight (9 and 11): senders each send their
 * messages one after another with an idempotency key apiece, through the typed client (one attempt per call),
 * retrying on any failure, and afterwards the database must hold exactly one message per key, with seq gapless.
 */
import type { Output } from "mls-delivery-service/client";
import { expect } from "vitest";
import type { Queryable } from "../../src/db/driver.js";
import type { Outcome } from "../helpers/client.js";
import { battleClient, DEADLINE_MS, errorBodies, untilAnswered, utf8, type Attempt } from "./calls.js";
import { guarantee } from "./report.js";

export type Sent = Output<"sendMessage">;

export interface Load {
  /** Keys answered so far. */
  done(): number;
  settled(): boolean;
  finished: Promise<void>;
  /** Every attempt, in the order answers came. */
  attempts: Attempt<Sent>[];
  /** The raw body of every answer that was not 2xx, as the server sent it. */
  errorBodies: { status: number; body: unknown }[];
  /** The final answer per key. */
  answers: Map<string, Outcome<Sent>>;
  keys: string[];
}

/** `deadlineMs`: how long each call may wait for its answer before it counts as no answer. */
export function sendLoad(
  url: string,
  convoId: string,
  senders: string[],
  perSender: number,
  prefix: string,
  deadlineMs = DEADLINE_MS,
): Load {
  const attempts: Attempt<Sent>[] = [];
  const answers = new Map<string, Outcome<Sent>>();
  const recorded = errorBodies();
  const keys = senders.flatMap((_, s) => Array.from({ length: perSender }, (_, i) => `${prefix}-s${s}-m${i}`));
  let settled = false;
  const finished = Promise.all(
    senders.map(async (sender, s) => {
      const client = battleClient(url, sender, { deadlineMs, fetch: recorded.fetch });
      for (let i = 0; i < perSender; i++) {
        const key = `${prefix}-s${s}-m${i}`;
        const input = { convoId, ciphertext: utf8(key), epoch: 0 };
        answers.set(key, await untilAnswered(() => client.sendMessage(input, { idempotencyKey: key }), attempts));
      }
    }),
  )
    .then(() => undefined)
    .finally(() => (settled = true));
  return {
    done: () => answers.size,
    settled: () => settled,
    finished,
    attempts,
    errorBodies: recorded.bodies,
    answers,
    keys,
  };
}

/** What the database holds after a load, checked against every guarantee; returns numbers for the report. */
export async function verifyLoad(
  db: Queryable,
  convoId: string,
  load: Load,
): Promise<{ stored: number; lastSeq: number }> {
  const finals = [...load.answers.values()];
  expect(
    finals.filter((answer) => answer.status !== 200),
    guarantee("every request eventually succeeded"),
  ).toEqual([]);
  expect(load.answers.size, guarantee("every request eventually succeeded")).toBe(load.keys.length);

  const rows = await db.query<{ id: string; seq: number; idempotency_key: string; ciphertext: Uint8Array }>(
    `SELECT id, seq, idempotency_key, ciphertext FROM messages WHERE convo_id = $1 ORDER BY seq`,
    [convoId],
  );
  expect(
    rows.filter((row) => row.idempotency_key === null).length,
    guarantee("every stored message keeps the idempotency key it was sent with"),
  ).toBe(0);
  const perKey = new Map<string, number>();
  for (const row of rows) perKey.set(row.idempotency_key, (perKey.get(row.idempotency_key) ?? 0) + 1);
  const duplicated = [...perKey].filter(([, count]) => count > 1).map(([key]) => key);
  const lost = load.keys.filter((key) => !perKey.has(key));
  expect(duplicated, guarantee("no message duplicated (one per idempotency key)")).toEqual([]);
  expect(lost, guarantee("no message lost (one per idempotency key)")).toEqual([]);
  expect(rows.length, guarantee("exactly one message per key")).toBe(load.keys.length);
  expect(
    rows.map((row) => row.seq),
    guarantee("seq is gapless from 1"),
  ).toEqual(rows.map((_, i) => i + 1));
  expect(
    rows.filter((row) => Buffer.from(row.ciphertext).toString() !== row.idempotency_key).length,
    guarantee("each stored message carries its own bytes"),
  ).toBe(0);
  expect(
    rows.filter((row) => load.answers.get(row.idempotency_key)?.data?.messageId !== row.id).length,
    guarantee("every client holds the messageId the database stored for its key"),
  ).toBe(0);
  return { stored: rows.length, lastSeq: rows.at(-1)?.seq ?? 0 };
}

/** How the attempts went, for the report. */
export function tally(attempts: Attempt<unknown>[]): {
  total: number;
  noAnswer: number;
  byStatus: Record<string, number>;
  replays: number;
} {
  const byStatus: Record<string, number> = {};
  let noAnswer = 0;
  let replays = 0;
  for (const tried of attempts) {
    if ("noAnswer" in tried) {
      noAnswer++;
      continue;
    }
    const { answer } = tried;
    const name = answer.status === 200 ? "200" : `${answer.status} ${answer.error ?? ""}`.trim();
    byStatus[name] = (byStatus[name] ?? 0) + 1;
    if (answer.error === undefined && answer.replayed) replays++;
  }
  return { total: attempts.length, noAnswer, byStatus, replays };
}
