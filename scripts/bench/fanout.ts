import { randomUUID } from "node:crypto";
import type { Sql } from "postgres";
import { fixed } from "./chart.js";
import type { ScenarioRow } from "./report.js";
import type { BenchServer } from "./server.js";
import { openSse, type SseStream } from "./sse.js";
import { CIPHERTEXT } from "./requests.js";
import { settledTransactions } from "./transactions.js";

export interface FanoutPlan {
  /** Streams opened on the conversation, one per member. */
  streams: number;
  messages: number;
  perSecond: number;
}

export interface FanoutSetup {
  /** Connected to another database than `database`. */
  admin: Sql;
  /** The database the servers use: nothing else may connect to it during a run. */
  database: string;
  convoId: string;
  /** The conversation's members, one stream each; the first one sends. */
  members: string[];
  tokenFor(did: string): Promise<string>;
  /** Starts a server on `database` that admits at least `streams` event streams. */
  startServer(streams: number): Promise<BenchServer>;
}

export interface FanoutResult extends FanoutPlan {
  expected: number;
  /** Distinct (stream, message) pairs received. */
  deliveries: number;
  /** The same message received twice on one stream. */
  repeated: number;
  failedSends: number;
  /** From each send's start to its receipt on a stream (the send's own latency included). */
  deliveryP50Ms: number;
  deliveryP99Ms: number;
  sendP50Ms: number;
  sendP99Ms: number;
  /** The messages whose transactions are counted: those past the warm-up (see `fanout`). */
  countedMessages: number;
  /** Database transactions the counted messages caused: the run's minus the control run's. */
  transactions: number;
  transactionsPerMessage: number;
  /** The same without the sends' own transactions (one each). */
  besidesSendsPerMessage: number;
  /** Both runs' totals, server start to stop. */
  runTransactions: number;
  controlTransactions: number;
}

/** Streams being opened at once: enough to open 1,000 in seconds, few enough not to flood the accept queue. */
const OPENING = 32;
/** How long deliveries may trail the last send's answer before they count as not made. */
const DELIVERY_WAIT_MS = 10_000;
/** The first messages of a run, sent in the control run too: their transactions are not counted. */
const WARMUP = 10;

/**
 * Scenario 8: `streams` members of one conversation each follow it on an event stream while its first
 * member sends `messages` at `perSecond`; each delivery's delay, and the database transactions per
 * message. pg_stat_database is exact only between quiet moments (see settledTransactions), so each run
 * is a server's whole life, and a control run is subtracted: same streams, as long, and only the first
 * WARMUP messages, which open the pool's connections and prepare its statements in both runs. What is
 * left is what the other messages cost once warm.
 */
export async function fanout(setup: FanoutSetup, plan: FanoutPlan): Promise<FanoutResult> {
  const tokens = await Promise.all(setup.members.map((did) => setup.tokenFor(did)));
  const counted = async (messages: number, holdMs: number) => {
    const before = await settledTransactions(setup.admin, setup.database);
    const result = await serverRun(setup, tokens, { ...plan, messages }, holdMs);
    return { ...result, transactions: (await settledTransactions(setup.admin, setup.database)) - before };
  };
  const run = await counted(plan.messages, 0);
  const control = await counted(WARMUP, run.elapsedMs);
  const { receipts, sends, repeated } = run;

  const started = new Map(sends.map((send) => [send.seq, send.startedAt]));
  const delays = receipts.flatMap(({ seq, at }) => (started.has(seq) ? [at - started.get(seq)!] : []));
  const sendMs = sends.map((send) => send.answeredAt - send.startedAt);
  const countedMessages = sends.length - control.sends.length;
  const transactions = run.transactions - control.transactions;
  return {
    ...plan,
    expected: plan.streams * plan.messages,
    deliveries: receipts.length - repeated,
    repeated,
    failedSends: plan.messages - sends.length,
    deliveryP50Ms: percentile(delays, 0.5),
    deliveryP99Ms: percentile(delays, 0.99),
    sendP50Ms: percentile(sendMs, 0.5),
    sendP99Ms: percentile(sendMs, 0.99),
    countedMessages,
    transactions,
    transactionsPerMessage: transactions / countedMessages,
    besidesSendsPerMessage: (transactions - countedMessages) / countedMessages,
    runTransactions: run.transactions,
    controlTransactions: control.transactions,
  };
}

interface Send {
  seq: number;
  startedAt: number;
  answeredAt: number;
}

/**
 * One server's life: start it, open the streams, send the messages, wait for their deliveries and
 * until `holdMs` has passed since the first send, close everything, stop it.
 */
async function serverRun(setup: FanoutSetup, tokens: string[], plan: FanoutPlan, holdMs: number) {
  const server = await setup.startServer(plan.streams);
  const streams: SseStream[] = [];
  // The distinct message seqs each stream received, and every receipt (seq, when).
  const received = tokens.map(() => new Set<number>());
  const receipts: { seq: number; at: number }[] = [];
  let repeated = 0;
  try {
    const path = `${server.url}/xrpc/blue.catbird.mls.streamConvoEvents?convoId=${encodeURIComponent(setup.convoId)}`;
    let next = 0;
    const opener = async () => {
      for (let i = next++; i < tokens.length; i = next++) {
        const seen = received[i]!;
        const stream = await openSse(path, { Authorization: `Bearer ${tokens[i]}` }, ({ event, data, at }) => {
          if (event !== "message") return;
          const { seq } = JSON.parse(data) as { seq: number };
          if (seen.has(seq)) repeated++;
          seen.add(seq);
          receipts.push({ seq, at });
        });
        streams.push(stream);
      }
    };
    // Settled, not all: a failed opener must not leave the others opening streams after the close below.
    const opening = await Promise.allSettled(Array.from({ length: OPENING }, opener));
    const failed = opening.find((outcome) => outcome.status === "rejected");
    if (failed) throw failed.reason;

    const began = performance.now();
    const sends = await sendAll(server.url, setup.convoId, tokens[0]!, plan);
    const expected = plan.streams * sends.length;
    const deadline = performance.now() + DELIVERY_WAIT_MS;
    while (receipts.length - repeated < expected && performance.now() < deadline) await sleep(20);
    await sleep(began + holdMs - performance.now());
    return { sends, receipts, repeated, elapsedMs: performance.now() - began };
  } finally {
    await Promise.all(streams.map((stream) => stream.close()));
    await server.stop();
  }
}

/** Sends `plan.messages` keyed messages at `plan.perSecond`, each on schedule whatever the others take. */
async function sendAll(serverUrl: string, convoId: string, token: string, plan: FanoutPlan): Promise<Send[]> {
  const start = performance.now();
  const sending = Array.from({ length: plan.messages }, async (_, i) => {
    await sleep(start + (i * 1000) / plan.perSecond - performance.now());
    const startedAt = performance.now();
    const response = await fetch(`${serverUrl}/xrpc/blue.catbird.mls.sendMessage`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${token}`,
        "Content-Type": "application/json",
        "Idempotency-Key": randomUUID(),
      },
      body: JSON.stringify({ convoId, ciphertext: CIPHERTEXT, epoch: 0 }),
    });
    const answeredAt = performance.now();
    if (!response.ok) {
      console.error(`[bench] fan-out send answered ${response.status}: ${await response.text()}`);
      return [];
    }
    const { seq } = (await response.json()) as { seq: number };
    return [{ seq, startedAt, answeredAt }];
  });
  return (await Promise.all(sending)).flat();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

function percentile(values: number[], q: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** What the issue allows at 1,000 streams: transactions per message (the send's own included), p99 delivery. */
const TARGET = { transactionsPerMessage: 2, p99Ms: 100 };

/** Scenario 8 in the table: delivery latency as the server's, and the transactions per message as the ratio. */
export function fanoutRow(result: FanoutResult): ScenarioRow {
  const allDelivered = result.deliveries === result.expected && result.repeated === 0;
  return {
    scenario: `8 fan-out, ${result.streams} streams, ${result.perSecond} msg/s`,
    server: { rps: NaN, p50Ms: result.deliveryP50Ms, p99Ms: result.deliveryP99Ms },
    baseline: { label: "limit", rps: NaN, p99Ms: TARGET.p99Ms },
    ratio: result.transactionsPerMessage,
    ratioLabel: `DB tx/msg (${fixed(result.besidesSendsPerMessage, 2)} besides the send); ${result.deliveries}/${result.expected} delivered`,
    target: `all delivered, p99 < ${TARGET.p99Ms} ms, <= ${TARGET.transactionsPerMessage} tx/msg`,
    met:
      allDelivered &&
      result.deliveryP99Ms < TARGET.p99Ms &&
      result.transactionsPerMessage <= TARGET.transactionsPerMessage,
  };
}

/** One line for the log. */
export function describeFanout(result: FanoutResult): string {
  return [
    `${result.deliveries}/${result.expected} delivered (${result.repeated} repeated, ${result.failedSends} sends failed)`,
    `delivery p50 ${fixed(result.deliveryP50Ms, 1)} ms, p99 ${fixed(result.deliveryP99Ms, 1)} ms`,
    `send p50 ${fixed(result.sendP50Ms, 1)} ms, p99 ${fixed(result.sendP99Ms, 1)} ms`,
    `${fixed(result.transactionsPerMessage, 2)} DB transactions per message (${fixed(result.besidesSendsPerMessage, 2)} besides the send;` +
      ` ${result.countedMessages} messages counted: run ${result.runTransactions} - control ${result.controlTransactions})`,
  ].join(", ");
}
