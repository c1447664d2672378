/**
 * Battle test 8: the list of the suite, printed. It is information, not a check: it asserts nothing.
 */
import { describe, it } from "vitest";

const SUITE: { attack: string; file: string; proves: string }[] = [
  {
    attack: "1. Idempotency stress",
    file: "concurrency.test.ts",
    proves: "100 concurrent identical sendMessage with one key: 1 message, 1 entry, 1 real run, one messageId",
  },
  {
    attack: "2. Concurrent member addition",
    file: "concurrency.test.ts",
    proves: "50 concurrent addMembers of the same 10 DIDs: 11 active members, no duplicates",
  },
  {
    attack: "3. Message ordering",
    file: "concurrency.test.ts",
    proves: "200 messages from 5 concurrent senders: seq 1..200 gapless, createdAt never decreasing",
  },
  {
    attack: "4. Idempotency TTL and cleanup",
    file: "expiry.test.ts",
    proves: "10 entries with a 2 s TTL are removed by the cron cleanup, live entries stay",
  },
  {
    attack: "5. Leave natural idempotency",
    file: "concurrency.test.ts",
    proves: "50 concurrent leaveConvo by one member: one leave, every answer a success",
  },
  {
    attack: "6. Welcome grace-period recovery",
    file: "expiry.test.ts",
    proves: "a crashed client re-fetches the same welcome within the grace period; 410 after it",
  },
  {
    attack: "7. Database constraints",
    file: "concurrency.test.ts",
    proves: "a second idempotency record for the same (caller, method, key) is refused by the schema",
  },
  { attack: "8. Suite info", file: "info.test.ts", proves: "nothing: prints this list" },
  {
    attack: "9. Crash recovery",
    file: "crash.test.ts",
    proves: "kill -9 twice under a retrying load: every request succeeds, one message per key, seq gapless",
  },
  {
    attack: "10. Two server processes",
    file: "concurrency.test.ts",
    proves: "100 identical requests split over two processes on one database: exactly one effect",
  },
  {
    attack: "11. Database connection loss",
    file: "connection-loss.test.ts",
    proves: "pg_terminate_backend under load: 503 NotReady only, recovery without restart, nothing lost",
  },
  {
    attack: "11b. Silent network to the database",
    file: "connection-loss.test.ts",
    proves: "blackholed connections under load: readiness 503 then 200, recovery by itself, nothing lost",
  },
];

describe("battle: suite info", () => {
  it("print_battle_test_suite_info (information only, asserts nothing)", () => {
    const width = Math.max(...SUITE.map((entry) => entry.attack.length));
    console.log(
      [
        "=== BATTLE TEST SUITE: the server under extreme conditions (test/battle/, npm run test:battle) ===",
        ...SUITE.map((entry) => `  ${entry.attack.padEnd(width)}  ${entry.file.padEnd(24)} ${entry.proves}`),
        "  every test starts the real Node entry as a child process against real PostgreSQL; see docs/battle-tests.md",
      ].join("\n"),
    );
  });
});
