/**
 * `npm run bench [-- --quick] [-- --soak] [-- --only send,read,fanout] [-- --profile]`: starts the server (Node entry) on a
 * throwaway database of the PostgreSQL at DATABASE_URL, loads it with wrk and prints every figure next
 * to a baseline measured in the same run (pgbench running the one-message-per-transaction send and the
 * server's own reads, a bare Hono route), because these machines are noisy. Writes bench/results.json and
 * bench/results.svg.
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { migrate } from "../src/db/migrate.js";
import { readMigrations } from "../src/db/migrations-fs.js";
import { createPostgresDatabase } from "../src/db/postgres.js";
import { alternated, describeAlternated } from "./bench/alternated.js";
import { createDatabase, LANES, METRICS_TOKEN, serverEnv, tokenFor } from "./bench/benchServers.js";
import { batchesDuring, describeBatches, type BatchFigures } from "./bench/batches.js";
import { measureEmbeddedStart, type EmbeddedStart } from "./bench/embedded.js";
import { describeFanout, fanout, fanoutRow, type FanoutResult } from "./bench/fanout.js";
import { loadAcross } from "./bench/instances.js";
import { cpuUsPerRequest, load, type LoadResult } from "./bench/load.js";
import { replayScenarios, type SendRun } from "./bench/replay.js";
import { readRequests, sendPlan, sendRequests, type SendPlan } from "./bench/requests.js";
import { bestPgbench, pgbench, type PgbenchResult } from "./bench/pgbench.js";
import { printTable, writeResults, type ScenarioRow } from "./bench/report.js";
import { selectScenarios } from "./bench/scenarios.js";
import { convoId, memberDid, seedConversations, seedFanoutConversation, seedReadConversation } from "./bench/seed.js";
import { printProfile, requestsServed, summarizeProfile } from "./bench/profile.js";
import { startServer, type BenchServer } from "./bench/server.js";
import { readMessagesScript, sendBatchScript, sendMessageScript } from "./bench/sql.js";

const options = (() => {
  try {
    return parseArgs({
      options: {
        quick: { type: "boolean" },
        soak: { type: "boolean" },
        only: { type: "string" },
        profile: { type: "boolean" },
      },
    }).values;
  } catch (error) {
    console.error(
      `${(error as Error).message}\nusage: npm run bench [-- --quick] [--soak] [--only send,read,...] [--profile]`,
    );
    process.exit(2);
  }
})();
const quick = options.quick ?? false;
/** --profile: the server of scenarios 1-6 runs under V8's CPU profiler; its profile is summed after it stops. */
const profileDir = options.profile ? `bench/profile-${Date.now().toString(36)}` : undefined;
const soak = options.soak ?? false;
const only = selectScenarios(options.only, soak);
if ("error" in only) {
  console.error(only.error);
  process.exit(2);
}
const run = only.run;
// Every scenario but the embedded start runs against PostgreSQL.
const needsPostgres = [...run].some((name) => name !== "embedded");
const databaseUrl = process.env.DATABASE_URL;
if (needsPostgres && !databaseUrl) {
  console.error(
    "npm run bench needs DATABASE_URL pointing at a PostgreSQL server (it creates and drops its own database)",
  );
  process.exit(2);
}

const plan = quick
  ? {
      seconds: 3,
      pgbenchSeconds: 2,
      clientCounts: [16, 64],
      turns: 0,
      readSizes: [1_000, 100_000],
      convos: 1000,
      fanoutStreams: [200],
    }
  : {
      seconds: 15,
      pgbenchSeconds: 8,
      clientCounts: [4, 8, 16, 32, 64],
      // Scenarios 1, 2 and 3 and their baselines run twice more by turns (scripts/bench/alternated.ts).
      turns: 2,
      readSizes: [1_000, 100_000, 1_000_000],
      convos: 1000,
      fanoutStreams: [200, 1000],
    };
/** Scenario 8's messages: the issue's measurement (50 messages at 10 a second). */
const FANOUT = { messages: 50, perSecond: 10 };
const CONNECTIONS = 64;
const READ_CONNECTIONS = 16;
const log = (message: string) => console.log(`[bench] ${message}`);

async function main() {
  log(`scenarios: ${[...run].join(", ")}`);
  const rows: ScenarioRow[] = [];
  const results: Record<string, unknown> = { quick, plan, scenarios: [...run], startedAt: new Date().toISOString() };
  // 7 first, while the machine is quiet: `npm start` with no DATABASE_URL, a new data directory, then again.
  const embedded = run.has("embedded") ? await measureEmbeddedStart() : undefined;
  // 8 next, on a database of its own: its transaction counts must be its servers' alone.
  const fanoutRows = run.has("fanout") ? await fanoutScenario(databaseUrl!, results) : [];
  if ([...run].some((name) => SERVER_SCENARIOS.has(name))) await postgresScenarios(databaseUrl!, rows, results);
  if (embedded) {
    rows.push(embeddedRow("7 npm start on PGlite, new data dir", embedded.first));
    rows.push(embeddedRow("7 npm start on PGlite, restart", embedded.restart));
    results.embedded = embedded;
  }
  rows.push(...fanoutRows);
  console.log("");
  printTable(rows);
  const batches = results.batches as Record<string, BatchFigures | null> | undefined;
  for (const [scenario, figures] of Object.entries(batches ?? {})) {
    console.log(`batches, ${scenario}: ${describeBatches(figures)}`);
  }
  results.rows = rows;
  await writeResults("bench", results, rows);
  log("wrote bench/results.json and bench/results.svg");
}

/** The scenarios that share one server and one database (postgresScenarios). */
const SERVER_SCENARIOS = new Set(["send", "read", "replay", "health", "memory"]);

/** Scenarios 1-6: the Node entry on postgres.js, on a throwaway database of the server at `databaseUrl`. */
async function postgresScenarios(databaseUrl: string, rows: ScenarioRow[], results: Record<string, unknown>) {
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const { name, url: benchUrl } = await createDatabase(admin, databaseUrl, "mls_bench");
  const db = createPostgresDatabase(benchUrl, { max: 4 });
  let server: BenchServer | undefined;
  try {
    log(`database ${name}: migrating${run.has("send") ? ` and seeding ${plan.convos} conversations` : ""}`);
    await migrate(db, await readMigrations());
    const tokens = new Map<string, string>();
    if (run.has("send")) {
      await seedConversations(db, plan.convos);
      for (const n of [...Array.from({ length: plan.convos }, (_, i) => i + 1), "hot"]) {
        tokens.set(String(n), await tokenFor(memberDid(n)));
      }
    }

    server = await startServer(serverEnv(benchUrl), profileDir);
    log(`server ${server.url} (pid ${server.pid})`);
    const errors: Record<string, number> = {};

    // Unmeasured: a new process's first seconds (its JIT compiling the HTTP path, connections opening) are no
    // steady state, and would set scenario 5's p99.
    await load({ title: "warm-up", url: `${server.url}/health`, connections: CONNECTIONS, durationSeconds: 2 });

    // 5 first: the HTTP ceiling, a bare Hono route in the same process.
    const ceiling = run.has("health")
      ? await load({
          title: "bare route",
          url: `${server.url}/health`,
          connections: CONNECTIONS,
          durationSeconds: plan.seconds,
        })
      : undefined;

    // 1: sendMessage spread over many conversations, with idempotency keys.
    const spreadConvos = Array.from({ length: plan.convos }, (_, i) => ({
      id: convoId(i + 1),
      token: tokens.get(String(i + 1))!,
    }));
    const spreadPlan = sendPlan("spread", spreadConvos);
    /** Keyed sends for `seconds`, as `plan` builds them (its conversations, its keys). */
    const sendLoad = (title: string, seconds: number, plan: SendPlan) =>
      load({ title, url: server!.url, connections: CONNECTIONS, durationSeconds: seconds, ...sendRequests(plan) });
    let peakRss = 0;
    let spread: LoadResult | undefined;
    let hot: SendRun | undefined;
    const replayRows: ScenarioRow[] = [];
    if (run.has("send")) {
      // Unmeasured, like the warm-up above: the send path's first seconds (its JIT, the batch statement's plan on
      // each connection) are no steady state either; in a 3 s --quick run they cost scenario 1 half its throughput.
      await sendLoad("send warm-up", 2, sendPlan("warm", spreadConvos));
      const sampler = setInterval(async () => {
        peakRss = Math.max(peakRss, await server!.rss().catch(() => 0));
      }, 200);
      const spreadRun = await batchesDuring(server, METRICS_TOKEN, plan.seconds, () =>
        sendLoad("sendMessage spread", plan.seconds, spreadPlan),
      );
      clearInterval(sampler);
      spread = spreadRun.result;
      log(`batches during scenario 1: ${describeBatches(spreadRun.batches)}`);
      log(`server CPU per request in scenario 1: ${cpuUsPerRequest(spreadRun.cpuMs, spread).toFixed(0)} µs`);
      const spreadBase = await bestPgbench(
        benchUrl,
        sendMessageScript({ convos: plan.convos }),
        plan.clientCounts,
        plan.pgbenchSeconds,
      );

      // 2: one hot conversation: every send waits for the same row lock.
      const hotPlan = sendPlan("hot", [{ id: convoId("hot"), token: tokens.get("hot")! }]);
      const hotRun = await batchesDuring(server, METRICS_TOKEN, plan.seconds, () =>
        sendLoad("sendMessage hot", plan.seconds, hotPlan),
      );
      hot = { plan: hotPlan, result: hotRun.result };
      log(`batches during scenario 2: ${describeBatches(hotRun.batches)}`);
      log(`server CPU per request in scenario 2: ${cpuUsPerRequest(hotRun.cpuMs, hotRun.result).toFixed(0)} µs`);
      const hotBase = await bestPgbench(
        benchUrl,
        sendMessageScript({ hot: true }),
        plan.clientCounts,
        plan.pgbenchSeconds,
      );

      // 4: replays of scenario 1's keys and of scenario 2's newest, before the turns below: their sends would push
      // scenario 1's keys out of the requests this process knows and 2's out of its recent answers.
      if (run.has("replay")) {
        const replays = await replayScenarios(
          { server, connections: CONNECTIONS, seconds: plan.seconds, token: METRICS_TOKEN },
          { plan: spreadPlan, result: spread },
          hot,
        );
        for (const [scenario, us] of Object.entries(replays.cpuUsPerRequest)) {
          log(`server CPU per request in scenario ${scenario}: ${us.toFixed(0)} µs`);
        }
        replayRows.push(...replays.rows);
        errors.replay = replays.failures;
      }

      /** Scenario `n` and its baseline by turns (fresh keys each run): its row holds the medians. */
      const byTurns = async (n: number, first: LoadResult, base: PgbenchResult, target: SendTarget) => {
        const turns = await alternated({ server: first, baseline: base }, plan.turns, {
          server: () => sendLoad(`scenario ${n}, again`, plan.seconds, sendPlan(`again-${n}`, target.convos)),
          baseline: () => pgbench(benchUrl, sendMessageScript(target.script), base.clients, plan.pgbenchSeconds),
        });
        if (plan.turns > 0) log(`scenario ${n} by turns: ${describeAlternated(turns)}`);
        return turns;
      };
      // The issue's targets: group commit beats one message per commit, most of all on one hot conversation.
      const spreadTurns = await byTurns(1, spread, spreadBase.best, {
        convos: spreadConvos,
        script: { convos: plan.convos },
      });
      const spreadRow = sendRow("1 sendMessage, 1000 convos, keys", spreadTurns.server, spreadTurns.baseline, 1.0);
      rows.push(spreadRow);
      const hotTurns = await byTurns(2, hotRun.result, hotBase.best, { convos: hotPlan.convos, script: { hot: true } });
      const hotRow = sendRow("2 sendMessage, one hot convo", hotTurns.server, hotTurns.baseline, 2.0);
      rows.push(hotRow);
      // The server's own limit: its batch statement under pgbench at the batch size it reached, as many at once
      // as it runs (a lane each; one hot conversation is one lane).
      rows.push(
        ...(await batchedRows(benchUrl, [
          {
            row: spreadRow,
            server: spreadTurns.server,
            batches: spreadRun.batches,
            target: { convos: plan.convos },
            clients: LANES,
          },
          { row: hotRow, server: hotTurns.server, batches: hotRun.batches, target: { hot: true }, clients: 1 },
        ])),
      );
      const batches: Record<string, BatchFigures | null> = {
        [spreadRow.scenario]: spreadRun.batches,
        [hotRow.scenario]: hotRun.batches,
      };
      const turns = { [spreadRow.scenario]: spreadTurns, [hotRow.scenario]: hotTurns };
      // 2 again on two instances of the server sharing the database, as a balancer spreads clients: each instance's
      // batches find the conversation's row held by the other's. Last: its sends would push scenarios 1 and 2's keys
      // out of what the first instance remembers.
      const second = await startServer(serverEnv(benchUrl));
      try {
        // Each instance its own keys: the same key sent to both would be a repeat, not a send.
        const hotPair = await loadAcross(
          [server.url, second.url],
          { title: "sendMessage hot, two instances", connections: CONNECTIONS, durationSeconds: plan.seconds },
          (instance) => sendRequests(sendPlan(`pair-${instance}`, hotPlan.convos)),
        );
        rows.push(sendRow("2c same, two server instances", hotPair, hotTurns.baseline));
        errors.hotPair = hotPair.non2xx + hotPair.errors;
      } finally {
        await second.stop();
      }
      Object.assign(results, { spreadBaseline: spreadBase.all, hotBaseline: hotBase.all, batches, turns });
      errors.spread = spreadTurns.failures;
      errors.hot = hotTurns.failures;
    }

    // 3: getMessages on conversations of growing size.
    if (run.has("read")) rows.push(...(await readScenario(db, server, benchUrl)));

    rows.push(...replayRows);
    if (ceiling) {
      rows.push({
        scenario: "5 HTTP ceiling (/health)",
        server: { rps: ceiling.requestsPerSecond, p50Ms: ceiling.p50Ms, p99Ms: ceiling.p99Ms },
        baseline: spread
          ? { label: "scenario 1 sendMessage", rps: spread.requestsPerSecond, p50Ms: spread.p50Ms, p99Ms: spread.p99Ms }
          : { label: "(scenario 1 not run)", rps: NaN },
        ratio: spread ? spread.requestsPerSecond / ceiling.requestsPerSecond : NaN,
        ratioLabel: "send / bare",
      });
    }

    // 6: memory.
    if (run.has("memory")) {
      const memory: Record<string, number> = { peakRssMb: peakRss / 2 ** 20 };
      if (soak) {
        log("soak: 5 minutes of scenario 1 load");
        const rssAt: number[] = [];
        const soakSampler = setInterval(async () => rssAt.push(await server!.rss()), 60_000);
        await sendLoad("soak", 300, sendPlan("soak", spreadConvos));
        clearInterval(soakSampler);
        memory.rssAfter1MinMb = (rssAt[0] ?? 0) / 2 ** 20;
        memory.rssAfter5MinMb = (rssAt[rssAt.length - 1] ?? 0) / 2 ** 20;
        memory.soakGrowth = memory.rssAfter5MinMb / Math.max(memory.rssAfter1MinMb, 1) - 1;
      }
      rows.push({
        scenario: "6 peak RSS under scenario 1 (MB)",
        server: { rps: NaN, p50Ms: NaN, p99Ms: NaN },
        baseline: { label: "target 200 MB", rps: NaN },
        ratio: memory.peakRssMb!,
        ratioLabel: soak ? `MB; soak growth ${(memory.soakGrowth! * 100).toFixed(1)}%` : "MB",
        target: "< 200 MB",
        met: memory.peakRssMb! < 200,
        memoryMb: { value: memory.peakRssMb!, limit: 200 },
      });
      results.memory = memory;
    }

    results.errors = errors;
  } finally {
    const served = profileDir && server ? await requestsServed(server.url, METRICS_TOKEN).catch(() => 0) : 0;
    await server?.stop();
    if (profileDir && server) {
      const summary = await summarizeProfile(profileDir);
      for (const line of printProfile(summary, served)) console.log(`[profile] ${line}`);
      results.cpuProfile = { requests: served, ...summary };
    }
    await db.close();
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

/**
 * 8: fan-out, one conversation per stream count, on a database of its own that nothing else touches
 * while it runs, each run on a server of its own (see `fanout`).
 */
async function fanoutScenario(databaseUrl: string, results: Record<string, unknown>): Promise<ScenarioRow[]> {
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const { name, url } = await createDatabase(admin, databaseUrl, "mls_bench_fanout");
  try {
    const db = createPostgresDatabase(url, { max: 1 });
    const convos: Awaited<ReturnType<typeof seedFanoutConversation>>[] = [];
    try {
      log(`database ${name}: migrating and seeding conversations of ${plan.fanoutStreams.join(", ")} members`);
      await migrate(db, await readMigrations());
      for (const streams of plan.fanoutStreams) convos.push(await seedFanoutConversation(db, streams));
      // Leaves autovacuum nothing to do during the runs, whose transactions are counted.
      await db.exec("VACUUM ANALYZE");
    } finally {
      await db.close();
    }
    const runs: FanoutResult[] = [];
    for (const { convoId, members } of convos) {
      const fanoutPlan = { streams: members.length, ...FANOUT };
      log(`fan-out: ${fanoutPlan.streams} streams, ${FANOUT.messages} messages at ${FANOUT.perSecond}/s`);
      const setup = {
        admin,
        database: name,
        convoId,
        members,
        tokenFor,
        // The total cap admits the run's streams whatever its default; each stream is its own member, so the
        // per-caller cap (EVENTS_MAX_STREAMS_PER_CALLER) is never reached.
        startServer: (streams: number) => startServer({ ...serverEnv(url), EVENTS_MAX_STREAMS: String(streams) }),
      };
      const result = await fanout(setup, fanoutPlan);
      log(`fan-out: ${describeFanout(result)}`);
      runs.push(result);
    }
    results.fanout = runs;
    return runs.map(fanoutRow);
  } finally {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

/** 3: getMessages pages on conversations of growing size, next to pgbench running the same SELECTs. */
async function readScenario(
  db: ReturnType<typeof createPostgresDatabase>,
  server: BenchServer,
  benchUrl: string,
): Promise<ScenarioRow[]> {
  const reads: { size: number; server: LoadResult; baseline: PgbenchResult }[] = [];
  for (const size of plan.readSizes) {
    log(`seeding a conversation of ${size} messages`);
    const id = await seedReadConversation(db, size);
    const token = await tokenFor(memberDid(`read-${size}`));
    const again = {
      server: () =>
        load({
          title: `getMessages ${size}`,
          url: server.url,
          connections: READ_CONNECTIONS,
          durationSeconds: plan.seconds,
          ...readRequests(id, token, size),
        }),
      baseline: () =>
        pgbench(
          benchUrl,
          readMessagesScript(id, memberDid(`read-${size}`), size),
          READ_CONNECTIONS,
          plan.pgbenchSeconds,
        ),
    };
    // By turns, like scenarios 1 and 2: one run of each drifted from 0.43 to 0.77 of pgbench between two runs.
    const first = { server: await again.server(), baseline: await again.baseline() };
    const turns = await alternated(first, plan.turns, again);
    if (plan.turns > 0) log(`scenario 3 (${size} messages) by turns: ${describeAlternated(turns)}`);
    reads.push({ size, server: turns.server, baseline: turns.baseline });
  }
  const rows: ScenarioRow[] = reads.map((read) => ({
    scenario: `3 getMessages, ${read.size} msgs`,
    server: { rps: read.server.requestsPerSecond, p50Ms: read.server.p50Ms, p99Ms: read.server.p99Ms },
    baseline: {
      label: "pgbench same SELECTs",
      rps: read.baseline.tps,
      p50Ms: read.baseline.p50Ms,
      p99Ms: read.baseline.p99Ms,
    },
    ratio: read.server.requestsPerSecond / read.baseline.tps,
    ratioLabel: "of pgbench",
    target: ">= 0.5",
    met: read.server.requestsPerSecond >= 0.5 * read.baseline.tps,
  }));
  const first = reads[0]!;
  const last = reads[reads.length - 1]!;
  const growth = last.server.p50Ms / Math.max(first.server.p50Ms, 0.001);
  rows.push({
    scenario: `3 growth ${first.size}→${last.size} (p50)`,
    server: { rps: last.server.requestsPerSecond, p50Ms: last.server.p50Ms, p99Ms: last.server.p99Ms },
    baseline: {
      label: `same at ${first.size} msgs`,
      rps: first.server.requestsPerSecond,
      p50Ms: first.server.p50Ms,
      p99Ms: first.server.p99Ms,
    },
    ratio: growth,
    ratioLabel: "x",
    target: "<= 1.3",
    met: growth <= 1.3,
  });
  return rows;
}

/** 7: the embedded default's RSS right after /health/ready answers, and how long `npm start` took to get there. */
function embeddedRow(scenario: string, start: EmbeddedStart): ScenarioRow {
  return {
    scenario,
    server: { rps: NaN, p50Ms: NaN, p99Ms: NaN },
    baseline: { label: "limit 300 MB", rps: NaN },
    ratio: start.rssMb,
    ratioLabel: `MB after ready, ready in ${(start.startMs / 1000).toFixed(1)} s`,
    target: "< 300 MB",
    met: start.rssMb < 300,
    memoryMb: { value: start.rssMb, limit: 300 },
  };
}

/**
 * For each send scenario whose batches were reported: pgbench running the batch statement with the scenario's
 * mean batch size, in messages per second, next to the server's sends per second.
 */
async function batchedRows(
  benchUrl: string,
  runs: {
    row: ScenarioRow;
    server: LoadResult;
    batches: BatchFigures | null;
    target: { convos: number } | { hot: true };
    clients: number;
  }[],
): Promise<ScenarioRow[]> {
  const rows: ScenarioRow[] = [];
  for (const { row, server, batches, target, clients } of runs) {
    if (!batches) continue;
    const items = Math.max(1, Math.round(batches.meanItems));
    const base = await pgbench(benchUrl, sendBatchScript(target, items), clients, plan.pgbenchSeconds);
    const messagesPerSecond = base.tps * items;
    rows.push({
      scenario: `${row.scenario.split(" ")[0]}b same, vs its batch statement`,
      server: { rps: server.requestsPerSecond, p50Ms: server.p50Ms, p99Ms: server.p99Ms },
      baseline: {
        label: `pgbench ${items} msgs/tx (-c ${clients}), msgs/s`,
        rps: messagesPerSecond,
        p50Ms: base.p50Ms,
        p99Ms: base.p99Ms,
      },
      ratio: server.requestsPerSecond / messagesPerSecond,
      ratioLabel: "of its own limit",
    });
  }
  return rows;
}

/** A send scenario's conversations and its baseline's pgbench script target. */
interface SendTarget {
  convos: SendPlan["convos"];
  script: Parameters<typeof sendMessageScript>[0];
}

/** A send scenario's row against the one-message pgbench baseline; with `least`, its target (ratio and p99). */
function sendRow(scenario: string, server: LoadResult, baseline: PgbenchResult, least?: number): ScenarioRow {
  const ratio = server.requestsPerSecond / baseline.tps;
  return {
    scenario,
    server: { rps: server.requestsPerSecond, p50Ms: server.p50Ms, p99Ms: server.p99Ms },
    baseline: {
      label: `pgbench 1 msg/tx (-c ${baseline.clients})`,
      rps: baseline.tps,
      p50Ms: baseline.p50Ms,
      p99Ms: baseline.p99Ms,
    },
    ratio,
    ratioLabel: "of pgbench",
    ...(least !== undefined && {
      target: `>= ${least.toFixed(1)}, p99 < 50 ms`,
      met: ratio >= least && server.p99Ms < 50,
    }),
  };
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
