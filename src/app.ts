import { Hono, type Context, type MiddlewareHandler } from "hono";
import { secureHeaders } from "hono/secure-headers";
import { methods } from "./api/index.js";
import { createGuards } from "./auth/guards.js";
import type { AppContext } from "./context.js";
import { apiReference } from "./docs/reference.js";
import { heldSendWaitMs } from "./db/limits.js";
import { notReady } from "./errors.js";
import { announce } from "./middleware/announce.js";
import { auth } from "./middleware/auth.js";
import { limitBody } from "./middleware/bodyLimit.js";
import { knownMethods } from "./middleware/knownMethods.js";
import { metricsAccess } from "./middleware/metricsAccess.js";
import { onError } from "./middleware/errors.js";
import { idempotency } from "./middleware/idempotency.js";
import { clientAddress, rateLimit } from "./middleware/rateLimit.js";
import { KnownRequests } from "./middleware/knownRequests.js";
import { RecentAnswers } from "./middleware/recentAnswers.js";
import { SendCoalescer } from "./services/sendCoalescer.js";
import { StoredAnswerReads } from "./services/storedAnswerReads.js";
import { requestDeadline } from "./middleware/requestDeadline.js";
import { requestIds } from "./middleware/requestId.js";
import { requestLog } from "./middleware/requestLog.js";
import { handle, NSID_PREFIX, oncePath, type XrpcMethod } from "./xrpc.js";

/**
 * The security headers of JSON answers: those that matter to an API read by programs (no sniffing, HTTPS only,
 * no referrer, not to be framed or read cross-origin). The headers that only concern a browser rendering a
 * document (opener policy, agent cluster, DNS prefetch, download and cross-domain policies, the XSS auditor)
 * go on the HTML reference page alone: each header costs every answer ~2 µs of the server's CPU.
 */
const API_SECURITY_HEADERS = {
  crossOriginOpenerPolicy: false,
  originAgentCluster: false,
  xDnsPrefetchControl: false,
  xDownloadOptions: false,
  xPermittedCrossDomainPolicies: false,
  xXssProtection: false,
  // Nothing here sets X-Powered-By: no header to remove.
  removePoweredBy: false,
} as const;

/**
 * The whole HTTP surface, built from an application context. Entry points only construct the
 * context and hand requests to `app.fetch`.
 *
 * request → request ids → known methods → request log, metrics → secure headers → body limit (declared length only) → request deadline
 *   → rate limit per address (no token; XRPC methods on a limit of their own) → auth
 *   → rate limit per caller → announce, idempotency (procedures; the body is first read here)
 *   → handler → service → driver
 *
 * Nothing before `authenticate` reads the body: `bodyText` is its only reader (limits in `readBodyText`).
 */
export function createApp(context: AppContext): Hono {
  // Every statement the app runs is counted in flight for /metrics (database pool use).
  const poolMax = context.db.concurrent ? context.config.DATABASE_POOL_MAX : 1;
  const ctx: AppContext = { ...context, db: context.metrics.instrument(context.db, poolMax) };
  const app = new Hono();
  const { config } = ctx;
  const guards = context.guards ?? createGuards(config, ctx.clock);

  app.onError(onError);
  app.notFound((c) => {
    const error = c.req.path.startsWith("/xrpc/") ? "MethodNotImplemented" : "NotFound";
    return c.json({ error, message: `no such route: ${c.req.method} ${c.req.path}` }, 404);
  });

  app.use(requestIds());
  app.use(knownMethods());
  app.use(requestLog({ logger: ctx.logger }));
  app.use(ctx.metrics.requests);
  app.use(secureHeaders(API_SECURITY_HEADERS));
  // One per app: on Workers, which build an app per request, each request's sends are a batch of their own.
  const sends = new SendCoalescer({
    db: ctx.db,
    maxItems: config.SEND_BATCH_MAX_ITEMS,
    maxBytes: config.SEND_BATCH_MAX_BYTES,
    lanes: config.SEND_BATCH_LANES,
    heldWaitMs: heldSendWaitMs(config),
    method: `${NSID_PREFIX}sendMessage`,
    observe: (items) => ctx.metrics.sendBatch(items),
    announcer: ctx.events,
  });
  app.use(async function provideContext(c, next) {
    c.set("app", ctx);
    c.set("db", ctx.db);
    c.set("sends", sends);
    await next();
  });
  app.use(limitBody({ maxSize: config.BODY_LIMIT_BYTES }));
  app.use(requestDeadline({ ms: config.REQUEST_TIMEOUT_MS }));
  // Routes without a token count per client address. XRPC methods count per address too, on their
  // own (generous) limit before any token work or DID resolution, and per caller after auth.
  const address = (c: Context) => clientAddress(c, config.RATE_LIMIT_IP_HEADER);
  const isXrpc = (c: Context) => c.req.path.startsWith("/xrpc/");
  const perAddress = rateLimit({
    limit: config.RATE_LIMIT_PER_IP,
    counter: guards.counters.address,
    key: address,
    skip: isXrpc,
  });
  if (perAddress) app.use(perAddress);
  const xrpcPerAddress = rateLimit({
    limit: config.RATE_LIMIT_XRPC_PER_IP,
    counter: guards.counters.xrpcAddress,
    key: address,
    skip: (c) => !isXrpc(c),
  });
  if (xrpcPerAddress) app.use(xrpcPerAddress);

  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/health/ready", async (c) => {
    try {
      await ctx.db.query("SELECT 1");
    } catch {
      throw notReady();
    }
    return c.json({ status: "ready", driver: ctx.db.kind });
  });
  // Never public in production: a token, or a separate port (METRICS_PORT, served by `createMetricsApp`).
  const metricsClosed = config.METRICS_PORT !== undefined || config.NODE_ENV === "production";
  app.get("/metrics", metricsAccess({ token: config.METRICS_TOKEN, closed: metricsClosed }), renderMetrics(ctx));
  const reference = apiReference(methods);
  app.get("/openapi.json", (c) => c.json(reference.openapi()));
  app.get("/docs", secureHeaders(), (c) => c.html(reference.html()));

  const authenticate = auth(guards);
  const perCaller = rateLimit({
    limit: config.RATE_LIMIT_PER_DID,
    counter: guards.counters.caller,
    key: (c) => c.get("caller"),
  });
  const limitCaller = perCaller ? [perCaller] : [];
  const recent = config.IDEMPOTENCY_RECENT_BYTES > 0 ? new RecentAnswers(config.IDEMPOTENCY_RECENT_BYTES) : undefined;
  const known =
    config.IDEMPOTENCY_KNOWN_REQUESTS > 0
      ? {
          requests: new KnownRequests(config.IDEMPOTENCY_KNOWN_REQUESTS),
          records: new StoredAnswerReads({
            db: ctx.db,
            logger: ctx.logger,
            observeFailure: () => ctx.metrics.storedAnswerReadFailed(),
          }),
        }
      : undefined;
  const exactlyOnce = (method: XrpcMethod) =>
    idempotency({
      ttlSeconds: config.IDEMPOTENCY_TTL_SECONDS,
      waitMs: config.IDEMPOTENCY_WAIT_MS,
      recent,
      known,
      once: oncePath(method),
    });
  // Procedures that write conversation events wake its streams after their transaction committed.
  const announcing = new Set([
    "createConvo",
    "addMembers",
    "leaveConvo",
    "sendMessage",
    "processCommit",
    "revokeDevice",
  ]);
  const wake = announce();
  for (const method of methods) {
    const path = `/xrpc/${NSID_PREFIX}${method.name}`;
    const afterCommit = announcing.has(method.name) ? [wake] : [];
    if (method.type === "query") app.get(path, authenticate, ...limitCaller, handle(method));
    else app.post(path, authenticate, ...limitCaller, ...afterCommit, exactlyOnce(method), handle(method));
    const verb = method.type === "query" ? "GET" : "POST";
    app.all(path, (c) =>
      c.json({ error: "InvalidRequest", message: `${method.name} takes ${verb}` }, 405, { Allow: verb }),
    );
  }

  return app;
}

/** The metrics listener (METRICS_PORT): `/metrics` and nothing else, for a port that only the scraper reaches. */
export function createMetricsApp(context: AppContext): Hono {
  const app = new Hono();
  app.get("/metrics", renderMetrics(context));
  return app;
}

function renderMetrics({ metrics }: AppContext): MiddlewareHandler {
  return async function renderMetrics(c) {
    const { contentType, body } = await metrics.render();
    return c.body(body, 200, { "Content-Type": contentType });
  };
}
