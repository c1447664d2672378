import { prometheus } from "@hono/prometheus";
import type { MiddlewareHandler } from "hono";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Database, Queryable } from "./db/driver.js";
import type { StreamEnd } from "./events/convoStream.js";
import type { CleanupResult } from "./jobs/cleanup.js";

/**
 * Where a replayed answer came from: the answers this process committed (RecentAnswers), the record of a request it
 * committed read by key (KnownRequests), or the database on the general path.
 */
export type ReplaySource = "memory" | "database" | "key";

/**
 * The Prometheus metrics of one running server. Each `createMetrics()` has its own registry, so apps
 * built side by side (tests) never share counts; a process (or a Worker isolate) creates one and
 * puts it in every `AppContext` it builds.
 */
export interface Metrics {
  /** Counts and times every request: `http_requests_total` and `http_request_duration_seconds` by method, route, status. */
  readonly requests: MiddlewareHandler;
  /** An idempotent procedure answered from its stored response; `method` is the NSID. */
  idempotencyReplay(method: string, from: ReplaySource): void;
  /** A statement reading known requests' records by key failed (`idempotency_key_read_failures_total`). */
  storedAnswerReadFailed(): void;
  /** An XRPC error answered (`xrpc_errors_total` by name): tells NotReady and IdempotencyKeyInUse from other 503s and 409s. */
  xrpcError(error: string): void;
  /** What one cleanup run did (the counts per kind), or that it failed. */
  cleanupRan(outcome: CleanupResult | "failed"): void;
  /** A batch of `items` sends was stored in one statement (`send_batch_items`). */
  sendBatch(items: number): void;
  /** An event stream was admitted: `event_streams_open` counts it until `streamEnded`. */
  streamOpened(): void;
  /** An event stream ended, and why (`event_streams_ended_total` by reason). */
  streamEnded(reason: StreamEnd): void;
  /** The same database with its in-flight queries and transactions counted, against `poolMax` connections (pool use). */
  instrument(db: Database, poolMax: number): Database;
  /** The text exposition format, and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const { registerMetrics } = prometheus({ registry });

  const replays = new Counter({
    name: "idempotency_replays_total",
    help: "Procedures answered from a stored idempotent response, by where it was read: this process's memory (memory), the record of a request this process committed, read by key (key), or the database on the general path (database)",
    labelNames: ["method", "from"] as const,
    registers: [registry],
  });
  const keyReadFailures = new Counter({
    name: "idempotency_key_read_failures_total",
    help: "Failed statements reading the records of requests this process committed, by key (replays from=key); each statement's reads took the general path instead",
    registers: [registry],
  });
  const errors = new Counter({
    name: "xrpc_errors_total",
    help: "Error answers by XRPC error name (NotReady, IdempotencyKeyInUse, ...)",
    labelNames: ["error"] as const,
    registers: [registry],
  });
  const cleanupRuns = new Counter({
    name: "cleanup_runs_total",
    help: "Cleanup runs by outcome: ran, skipped (another runner held the lock) or failed",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  const cleanupRows = new Counter({
    name: "cleanup_rows_total",
    help: "Rows removed (or, for welcomesExpired, marked expired) by cleanup, per kind",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const cleanupLastRun = new Gauge({
    name: "cleanup_last_run_timestamp_seconds",
    help: "When cleanup last completed a run",
    registers: [registry],
  });

  const batchItems = new Histogram({
    name: "send_batch_items",
    help: "Sends stored per batch statement (group commit); the count is the batches, each one commit",
    buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256],
    registers: [registry],
  });

  const streamsOpen = new Gauge({
    name: "event_streams_open",
    help: "Event streams open on this instance (admitted and not yet ended)",
    registers: [registry],
  });
  const streamsEnded = new Counter({
    name: "event_streams_ended_total",
    help: "Event streams ended, by reason: client_closed, slow_consumer, removed, shutdown or error",
    labelNames: ["reason"] as const,
    registers: [registry],
  });

  // Plain integers on the hot path; the gauges read them only when scraped.
  const inFlight = { queries: 0, transactions: 0 };
  new Gauge({
    name: "db_queries_in_flight",
    help: "Statements running on the pool outside a transaction (each holds a connection)",
    registers: [registry],
    collect() {
      this.set(inFlight.queries);
    },
  });
  new Gauge({
    name: "db_transactions_in_flight",
    help: "Open transactions (each holds a connection until it ends)",
    registers: [registry],
    collect() {
      this.set(inFlight.transactions);
    },
  });

  const poolMaxGauge = new Gauge({
    name: "db_pool_max_connections",
    help: "Connections the pool may open (DATABASE_POOL_MAX; 1 for PGlite); statements in flight beyond it wait for one",
    registers: [registry],
  });

  return {
    requests: registerMetrics,
    xrpcError: (error) => errors.inc({ error }),
    idempotencyReplay: (method, from) => replays.inc({ method, from }),
    storedAnswerReadFailed: () => keyReadFailures.inc(),
    cleanupRan(outcome) {
      if (outcome === "failed" || !outcome.ran) {
        cleanupRuns.inc({ outcome: outcome === "failed" ? "failed" : "skipped" });
        return;
      }
      cleanupRuns.inc({ outcome: "ran" });
      for (const [kind, count] of Object.entries(outcome)) {
        if (typeof count === "number") cleanupRows.inc({ kind }, count);
      }
      cleanupLastRun.set(Date.now() / 1000);
    },
    sendBatch: (items) => batchItems.observe(items),
    streamOpened: () => streamsOpen.inc(),
    streamEnded(reason) {
      streamsOpen.dec();
      streamsEnded.inc({ reason });
    },
    instrument(db, poolMax) {
      poolMaxGauge.set(poolMax);
      return {
        kind: db.kind,
        concurrent: db.concurrent,
        close: () => db.close(),
        exec: (script) => db.exec(script),
        maintenance: (fn) => db.maintenance(fn),
        async query<T extends object>(text: string, params?: readonly unknown[]) {
          inFlight.queries++;
          try {
            return await db.query<T>(text, params);
          } finally {
            inFlight.queries--;
          }
        },
        async transaction<T>(fn: (tx: Queryable) => Promise<T>) {
          inFlight.transactions++;
          try {
            return await db.transaction(fn);
          } finally {
            inFlight.transactions--;
          }
        },
      };
    },
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
}
