/**
 * The readable report every battle test prints:
 *
 *   === BATTLE TEST: Idempotency Stress (100x Concurrent Identical Requests) ===
 *     created conversation battle-idem-1a2b3c4d-convo
 *     results: replayed 99, original 1, messages in db 1, idempotency entries 1
 *   PASS: exactly-once under 100 concurrent identical requests
 *
 * Lines are collected and printed at once at the end (PASS, or FAIL with the broken guarantee), so reports of
 * tests running side by side never interleave.
 */
import { onTestFailed } from "vitest";

export interface BattleReport {
  /** One indented line of what happened. */
  log(line: string): void;
  /** Prints the report with its closing PASS line. */
  pass(summary: string): void;
  /** Adds what `describe` returns (a server's last log lines, say) to the report if the test fails. */
  onFailure(describe: () => string): void;
}

/** Starts the report of the running test; call it inside the test. */
export function battleReport(title: string): BattleReport {
  const lines = [`=== BATTLE TEST: ${title} ===`];
  const diagnostics: (() => string)[] = [];
  const print = (last: string) => console.log([...lines, last].join("\n"));
  onTestFailed(({ task }) => {
    const reason = task.result?.errors?.[0]?.message ?? "unknown failure";
    for (const describe of diagnostics)
      lines.push(
        ...describe()
          .split("\n")
          .map((line) => `  | ${line}`),
      );
    print(`FAIL: ${reason.split("\n")[0]}`);
  });
  return {
    log: (line) => void lines.push(`  ${line}`),
    pass: (summary) => print(`PASS: ${summary}`),
    onFailure: (describe) => void diagnostics.push(describe),
  };
}

/** The message an assertion carries, so a failure names the promise the server broke. */
export const guarantee = (name: string) => `broken guarantee: ${name}`;
