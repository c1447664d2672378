/** The scenarios `--only` can pick, by name; each keeps its number in the table. */
export const SCENARIOS = {
  send: "1 sendMessage over 1000 conversations, 2 one hot conversation (2c: on two server instances)",
  read: "3 getMessages on conversations of growing size",
  replay: "4 idempotent replay of scenario 1's keys (runs send)",
  health: "5 HTTP ceiling (bare /health)",
  memory: "6 peak RSS under scenario 1 (runs send; --soak adds 5 minutes)",
  embedded: "7 npm start on embedded PGlite (no DATABASE_URL): RSS right after ready, time to ready",
  fanout: "8 fan-out: streams on one conversation, 50 messages at 10/s: delivery p50/p99, DB transactions per message",
} as const;

export type ScenarioName = keyof typeof SCENARIOS;

/** What a scenario needs run before it: replay replays scenario 1's keys, memory samples during it. */
const NEEDS: Partial<Record<ScenarioName, ScenarioName>> = { replay: "send", memory: "send" };

/**
 * The scenarios to run from `--only a,b` (all when absent), with what they need added;
 * `--soak` is part of memory. An unknown name is an error naming the known ones.
 */
export function selectScenarios(
  only: string | undefined,
  soak: boolean,
): { run: Set<ScenarioName> } | { error: string } {
  const names =
    only === undefined
      ? Object.keys(SCENARIOS)
      : only
          .split(",")
          .map((name) => name.trim())
          .filter(Boolean);
  if (soak) names.push("memory");
  const unknown = names.filter((name) => !(name in SCENARIOS));
  if (unknown.length || !names.length) {
    const known = Object.entries(SCENARIOS).map(([name, what]) => `  ${name}: ${what}`);
    return {
      error: `--only takes a comma-separated list of:\n${known.join("\n")}\n(unknown: ${unknown.join(", ") || "none given"})`,
    };
  }
  const run = new Set(names as ScenarioName[]);
  for (const name of [...run]) if (NEEDS[name]) run.add(NEEDS[name]!);
  return { run };
}
