/**
 * Load for the attacks that break the server or its database mid-flight (9 and 11): senders each send their
 * messages one after another with an idempotency key apiece, retrying on any failure, and afterwards the
 * database must hold exactly one message per key, with seq gapless.
 */
import { expect } from "vitest";
import type { Queryable } from "../../src/db/driver.js";
import { base64, untilAnswered, type Attempt, type BattleClient, type Reply } from "./client.js";
import { guarantee } from "./report.js";

export interface Load {
  /** Keys answered so far. */
  done(): number;
  settled(): boolean;
  finished: Promise<void>;
  /** Every attempt, in the order answers came. */
  attempts: Attempt[];
  /** The final answer per key. */
  answers: Map<string, Reply>;
  keys: string[];
}

export function sendLoad(
  client: BattleClient,
  convoId: string,
  senders: string[],
  perSender: number,
  prefix: string,
): Load {
  const attempts: Attempt[] = [];
  const answers = new Map<string, Reply>();
  const keys = senders.flatMap((_, s) => Array.from({ length: perSender }, (_, i) => `${prefix}-s${s}-m${i}`));
  let settled = false;
  const finished = Promise.all(
    senders.map(async (sender, s) => {
      for (let i = 0; i < perSender; i++) {
        const key = `${prefix}-s${s}-m${i}`;
        const body = { convoId, ciphertext: base64(key), epoch: 0 };
        answers.set(
          key,
          await untilAnswered(() => client.post(sender, "sendMessage", body, { idempotencyKey: key }), attempts),
        );
      }
    }),
  )
    .then(() => undefined)
    .finally(() => (settled = true));
  return { done: () => answers.size, settled: () => settled, finished, attempts, answers, keys };
}

/** What the database holds after a load, checked against every guarantee; returns numbers for the report. */
export async function verifyLoad(
  db: Queryable,
  convoId: string,
  load: Load,
): Promise<{ stored: number; lastSeq: number }> {
  const finals = [...load.answers.values()];
  expect(
    finals.filter((reply) => reply.status !== 200).map((reply) => reply.body),
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
    rows.filter((row) => load.answers.get(row.idempotency_key)?.body.messageId !== row.id).length,
    guarantee("every client holds the messageId the database stored for its key"),
  ).toBe(0);
  return { stored: rows.length, lastSeq: rows.at(-1)?.seq ?? 0 };
}

/** How the attempts went, for the report. */
export function tally(attempts: Attempt[]): {
  total: number;
  noAnswer: number;
  byStatus: Record<string, number>;
  replays: number;
} {
  const byStatus: Record<string, number> = {};
  let noAnswer = 0;
  let replays = 0;
  for (const attempt of attempts) {
    if ("noAnswer" in attempt) {
      noAnswer++;
      continue;
    }
    const name =
      attempt.reply.status === 200 ? "200" : `${attempt.reply.status} ${attempt.reply.body?.error ?? ""}`.trim();
    byStatus[name] = (byStatus[name] ?? 0) + 1;
    if (attempt.reply.replayed) replays++;
  }
  return { total: attempts.length, noAnswer, byStatus, replays };
}
