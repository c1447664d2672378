/**
 * Battle test 9: kill -9 of the server process, twice, in the middle of a load whose clients retry on any
 * failure. Whatever a killed process had in flight either committed with its stored answer or rolled back.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testDatabase } from "../helpers/context.js";
import { waitFor } from "./calls.js";
import { createConvo, enterBattle } from "./fixtures.js";
import { sendLoad, tally, verifyLoad } from "./load.js";
import { battleReport, guarantee } from "./report.js";
import { start, stopAll, type BattleServer } from "./server.js";

const SENDERS = 8;
const PER_SENDER = 25;
/** Kill when this many of the 200 requests have their answer: both well inside the load. */
const KILL_AT = [50, 120];

const db = testDatabase(4);
const servers: BattleServer[] = [];
const launch = async (env: Record<string, string> = {}) => {
  const server = await start({ IDEMPOTENCY_WAIT_MS: "5000", ...env });
  servers.push(server);
  return server;
};

afterAll(async () => {
  await stopAll(servers);
  await db.close();
});

describe("battle: crash recovery", () => {
  it("9. kill -9 twice under a retrying sendMessage load: one message per key, seq gapless", async () => {
    const report = battleReport("Crash Recovery (kill -9 Twice Under Load, Clients Retry)");
    const battle = await enterBattle(db, "crash");
    let server = await launch();
    report.onFailure(() => `server output (last lines):\n${server.output()}`);
    const senders = Array.from({ length: SENDERS }, (_, i) => battle.did(`sender${i}`));
    const convo = await createConvo(server.url, battle, senders[0]!, { initialMembers: senders.slice(1) });
    report.log(`created conversation ${convo.name} (${convo.id}); server pid ${server.pid} on port ${server.port}`);

    const load = sendLoad(server.url, convo.id, senders, PER_SENDER, battle.prefix);
    report.log(`launched ${SENDERS} senders x ${PER_SENDER} messages, each with its own idempotency key`);
    const killedAt: number[] = [];
    for (const threshold of KILL_AT) {
      await waitFor(() => load.done() >= threshold || load.settled(), 30_000, `${threshold} answers`);
      if (load.settled()) break;
      killedAt.push(load.done());
      await server.kill9();
      report.log(`kill -9 pid ${server.pid} with ${load.done()}/${load.keys.length} answered`);
      server = await launch({ PORT: String(server.port) });
      report.log(`restarted: pid ${server.pid} on the same port`);
    }
    await load.finished;

    const attempts = tally(load.attempts);
    report.log(
      `attempts ${attempts.total}: no answer ${attempts.noAnswer}, by status ${JSON.stringify(attempts.byStatus)}, ` +
        `replayed ${attempts.replays}`,
    );
    expect(killedAt.length, guarantee("the test killed the server twice while the load was running")).toBe(2);
    const { stored, lastSeq } = await verifyLoad(db, convo.id, load);
    report.log(`results: ${load.answers.size} requests answered 200, messages in db ${stored}, seq 1..${lastSeq}`);
    report.pass("two kill -9 mid-load: every request succeeded, one message per key, seq gapless");
  });
});
