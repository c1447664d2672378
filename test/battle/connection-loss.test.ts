/**
 * Battle test 11: the database drops the server's connections (pg_terminate_backend) again and again under
 * load. The server must answer 503 NotReady while it cannot use the database (never hang, never a 500 with
 * details), recover by itself, and lose or duplicate nothing.
 *
 * Battle test 11b: the network goes silent instead (a TCP proxy stops carrying bytes on every open
 * connection but accepts new ones): the server must notice by itself, say so on /health/ready, and recover.
 */
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import { testDatabase } from "../helpers/context.js";
import { battleClient, sleep, untilAnswered, utf8, waitFor } from "./calls.js";
import { isReady } from "./client.js";
import { createConvo, enterBattle } from "./fixtures.js";
import { sendLoad, tally, verifyLoad } from "./load.js";
import { battleReport, guarantee } from "./report.js";
import { start, stopAll, type BattleServer } from "./server.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcpProxy.js";

const SENDERS = 6;
const PER_SENDER = 20;
const ROUNDS = 12;
const ROUND_PAUSE_MS = 120;
/** No answer within this long counts as a hang. */
const HANG_MS = 15_000;

const db = testDatabase(4);
let server: BattleServer | undefined;
let proxy: TcpProxy | undefined;

// Each test starts its own server: stop it after that test (11b used to overwrite 11's, which ran on, orphaned).
afterEach(async () => {
  await stopAll([server]);
  server = undefined;
});
afterAll(async () => {
  await proxy?.close();
  await db.close();
});

/** This run's database URL with an application_name that marks the server's connections. */
function markedUrl(applicationName: string): string {
  const url = new URL(inject("databaseUrl"));
  url.searchParams.set("application_name", applicationName);
  return url.toString();
}

/** How many connections the server marked with `applicationName` holds to the database. */
async function serverConnections(applicationName: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`,
    [applicationName],
  );
  return row!.n;
}

describe("battle: database connection loss", () => {
  it("11. pg_terminate_backend on the server's connections under load: 503 NotReady, recovery, nothing lost", async () => {
    const report = battleReport("Database Connection Loss (pg_terminate_backend Under Load)");
    const battle = await enterBattle(db, "connloss");
    server = await start({ DATABASE_URL: markedUrl(battle.prefix), IDEMPOTENCY_WAIT_MS: "5000" });
    report.onFailure(() => `server output (last lines):\n${server?.output()}`);
    const senders = Array.from({ length: SENDERS }, (_, i) => battle.did(`sender${i}`));
    const convo = await createConvo(server.url, battle, senders[0]!, { initialMembers: senders.slice(1) });
    report.log(
      `created conversation ${convo.name} (${convo.id}); server pid ${server.pid}, application_name ${battle.prefix}`,
    );

    // Every answer must come within HANG_MS; senders retry on 503 until they get their 200.
    const load = sendLoad(server.url, convo.id, senders, PER_SENDER, battle.prefix, HANG_MS);
    report.log(`launched ${SENDERS} senders x ${PER_SENDER} messages with idempotency keys`);

    await waitFor(() => load.done() >= 10 || load.settled(), 30_000, "the load to get going");
    let terminated = 0;
    let rounds = 0;
    while (rounds < ROUNDS && !load.settled()) {
      const killed = await db.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
        [battle.prefix],
      );
      terminated += killed.length;
      rounds++;
      await sleep(ROUND_PAUSE_MS);
    }
    report.log(
      `terminated ${terminated} server connections in ${rounds} rounds, ${load.done()}/${load.keys.length} answered by then`,
    );

    const died = server.exited.then(() => {
      throw new Error(guarantee("the server process survives losing its database connections"));
    });
    await Promise.race([load.finished, died]);
    const attempts = tally(load.attempts);
    report.log(
      `attempts ${attempts.total}: no answer ${attempts.noAnswer}, by status ${JSON.stringify(attempts.byStatus)}`,
    );
    const failures = load.attempts.flatMap((attempt) =>
      "answer" in attempt && attempt.answer.status !== 200 ? [attempt.answer] : [],
    );
    expect(
      attempts.noAnswer,
      guarantee("the server always answers while its connections die (no hang, no crash)"),
    ).toBe(0);
    expect(
      failures.filter((answer) => answer.status >= 500 && answer.status !== 503),
      guarantee("never a 500 while the database connection is lost"),
    ).toEqual([]);
    expect(
      failures.filter((answer) => answer.status !== 503),
      guarantee("a lost database connection answers 503, nothing else"),
    ).toEqual([]);
    // The raw bodies as the server sent them (the typed client reads only error and message): exactly those two.
    expect(load.errorBodies.length, "every failed answer's raw body was recorded").toBe(failures.length);
    for (const { body } of load.errorBodies) {
      expect(body, guarantee("503 is NotReady without details")).toEqual({
        error: "NotReady",
        message: expect.any(String),
      });
    }
    expect(terminated, guarantee("the attack terminated the server's connections")).toBeGreaterThan(0);

    let ready = false;
    const readyBy = Date.now() + 10_000;
    while (!(ready = await isReady(server.url)) && Date.now() < readyBy) await sleep(100);
    const afterKey = `${battle.prefix}-after`;
    const timed = battleClient(server.url, senders[0]!, { deadlineMs: HANG_MS });
    const after = await untilAnswered(
      () =>
        timed.sendMessage({ convoId: convo.id, ciphertext: utf8(afterKey), epoch: 0 }, { idempotencyKey: afterKey }),
      [],
      { deadlineMs: 10_000 },
    );
    report.log(
      `after the attack: /health/ready ${ready ? 200 : "never ready"}, a new send ${after.status}, same pid ${server.pid}`,
    );
    expect(ready, guarantee("the server becomes ready again by itself")).toBe(true);
    expect(after.status, guarantee("the server recovers by itself")).toBe(200);

    load.keys.push(afterKey);
    load.answers.set(afterKey, after);
    const { stored, lastSeq } = await verifyLoad(db, convo.id, load);
    report.log(`results: ${load.answers.size} requests answered 200, messages in db ${stored}, seq 1..${lastSeq}`);
    report.pass(
      "connections terminated under load: 503 NotReady only, recovered by itself, nothing lost or duplicated",
    );
  });

  it("11b. the network to the database goes silent under load: 503 NotReady, readiness notices, recovery, nothing lost", async () => {
    const report = battleReport("Database Connection Loss (Silent Network: Blackholed Connections Under Load)");
    const battle = await enterBattle(db, "blackhole");
    const target = new URL(inject("databaseUrl"));
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    // A pool smaller than the load, so every connection is open (and busy) when the network goes silent.
    server = await start({
      DATABASE_URL: proxy.url(markedUrl(battle.prefix)),
      DATABASE_POOL_MAX: "3",
      REQUEST_TIMEOUT_MS: "4000",
    });
    report.onFailure(() => `server output (last lines):\n${server?.output()}`);
    const senders = Array.from({ length: SENDERS }, (_, i) => battle.did(`sender${i}`));
    const convo = await createConvo(server.url, battle, senders[0]!, { initialMembers: senders.slice(1) });

    const load = sendLoad(server.url, convo.id, senders, PER_SENDER, battle.prefix, HANG_MS);
    await waitFor(() => load.done() >= 10 || load.settled(), 30_000, "the load to get going");
    // Sends share a connection now (group commit): readiness checks open the rest of the pool, so every
    // connection the server has is open when the network goes silent.
    for (let tries = 0; (await serverConnections(battle.prefix)) < 3 && tries < 50; tries++) {
      await Promise.all(Array.from({ length: 12 }, () => fetch(`${server!.url}/health/ready`).then((r) => r.text())));
    }
    const silenced = proxy.blackhole();
    report.log(`blackholed ${silenced} open connections with ${load.done()}/${load.keys.length} answered`);

    // Readiness, polled from the moment the network went silent until it is ready again.
    const readiness: (number | "no answer")[] = [];
    const readyBy = Date.now() + 40_000;
    for (;;) {
      const status = await fetch(`${server.url}/health/ready`, { signal: AbortSignal.timeout(HANG_MS) }).then(
        (response) => response.status,
        () => "no answer" as const,
      );
      readiness.push(status);
      if (status === 200 && readiness.includes(503)) break;
      if (Date.now() > readyBy) break;
      await sleep(100);
    }
    report.log(`/health/ready answers in order: ${readiness.join(", ")}`);
    expect(readiness.includes(503), guarantee("/health/ready says 503 while the database does not answer")).toBe(true);
    expect(readiness.at(-1), guarantee("/health/ready is 200 again by itself")).toBe(200);
    expect(readiness, guarantee("/health/ready always answers")).not.toContain("no answer");

    const died = server.exited.then(() => {
      throw new Error(guarantee("the server process survives a silent network"));
    });
    await Promise.race([load.finished, died]);
    const attempts = tally(load.attempts);
    report.log(
      `attempts ${attempts.total}: no answer ${attempts.noAnswer}, by status ${JSON.stringify(attempts.byStatus)}`,
    );
    expect(attempts.noAnswer, guarantee("the server always answers while the network is silent (no hang)")).toBe(0);
    const failures = load.attempts.flatMap((attempt) =>
      "answer" in attempt && attempt.answer.status !== 200 ? [attempt.answer] : [],
    );
    expect(
      failures.filter((answer) => answer.status !== 503 && answer.error !== "IdempotencyKeyInUse"),
      guarantee("a silent database answers 503 NotReady (or 409 while a retry's first try still runs)"),
    ).toEqual([]);
    expect(
      attempts.total,
      guarantee("every request succeeds within a bounded number of retries with its key"),
    ).toBeLessThanOrEqual(load.keys.length + SENDERS * 20);

    const { stored, lastSeq } = await verifyLoad(db, convo.id, load);
    report.log(`results: ${load.answers.size} requests answered 200, messages in db ${stored}, seq 1..${lastSeq}`);
    report.pass(
      "silent network under load: 503 NotReady, readiness 503 then 200, recovered by itself, nothing lost or duplicated",
    );
  }, 180_000);
});
