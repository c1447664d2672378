/**
 * `npm run bench:compare -- <git ref> [--rounds 5] [--seconds 10]`: this checkout's server against the server of
 * another version (`<git ref>`), both at once on one throwaway database of the PostgreSQL at DATABASE_URL, each
 * loaded by a wrk of its own with keyed sends to its own half of 1,000 conversations (the halves swap every round).
 * Prints each one's server CPU per send, and the ratio.
 *
 * For a change too small for `npm run bench` to see: these machines' speed drifts by a third within minutes, so two
 * runs one after the other differ by more than most changes do. Run at the same time, both versions see the same
 * machine: in A/A runs (a version against itself) the rounds' ratios of CPU per send stayed within about 6% of
 * 1 and the median of five within 1%: take five rounds or more.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import postgres from "postgres";
import { migrate } from "../src/db/migrate.js";
import { readMigrations } from "../src/db/migrations-fs.js";
import { createPostgresDatabase } from "../src/db/postgres.js";
import { createDatabase, serverEnv, tokenFor } from "./bench/benchServers.js";
import { cpuUsPerRequest, load } from "./bench/load.js";
import { sendPlan, sendRequests, type SendPlan } from "./bench/requests.js";
import { convoId, memberDid, seedConversations } from "./bench/seed.js";
import { startServer, type BenchServer } from "./bench/server.js";

const git = promisify(execFile);
const THIS_TREE = fileURLToPath(new URL("..", import.meta.url));
const CONVERSATIONS = 1000;
/** Per server: half of the bench's 64. */
const CONNECTIONS = 32;
const WARM_UP_SECONDS = 3;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: "string", default: "5" }, seconds: { type: "string", default: "10" } },
});
const [ref] = positionals;
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const databaseUrl = process.env.DATABASE_URL;
if (!ref || !databaseUrl || !Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(seconds) || seconds < 1) {
  console.error("usage: DATABASE_URL=... npm run bench:compare -- <git ref> [--rounds 5] [--seconds 10]");
  process.exit(2);
}

/** One server's sends in one round. */
interface Share {
  requestsPerSecond: number;
  cpuUs: number;
  p99Ms: number;
  failed: number;
}

/** What to undo, last first, each step on its own: one that fails (a server already gone) skips none of the others. */
const cleanup: (() => Promise<unknown>)[] = [];

async function cleanUp(): Promise<void> {
  for (let step = cleanup.pop(); step; step = cleanup.pop()) {
    await step().catch((error: unknown) => console.error("cleanup:", error));
  }
}

async function main(ref: string, databaseUrl: string): Promise<void> {
  await git("git", ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], { cwd: THIS_TREE }).catch(() => {
    throw new Error(`${ref} names no commit`);
  });
  // The other version's server runs on this checkout's schema and modules: they must be the same.
  const shared = ["db/migrations", "package-lock.json", "scripts/patches"];
  const differs = await git("git", ["diff", "--quiet", ref, "--", ...shared], { cwd: THIS_TREE }).then(
    () => false,
    () => true,
  );
  if (differs) throw new Error(`${ref} differs from this checkout in ${shared.join(", ")}: not comparable this way`);

  try {
    const dir = await mkdtemp(join(tmpdir(), "mls-bench-compare-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const other = join(dir, "tree");
    cleanup.push(() => git("git", ["worktree", "remove", "--force", other], { cwd: THIS_TREE }));
    await git("git", ["worktree", "add", "--detach", other, ref], { cwd: THIS_TREE });
    await symlink(join(THIS_TREE, "node_modules"), join(other, "node_modules"));
    const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    cleanup.push(() => admin.end());
    const { name, url } = await createDatabase(admin, databaseUrl, "mls_compare");
    cleanup.push(() => admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    const db = createPostgresDatabase(url, { max: 4 });
    try {
      await migrate(db, await readMigrations());
      await seedConversations(db, CONVERSATIONS);
    } finally {
      await db.close();
    }
    const convos = await Promise.all(
      Array.from({ length: CONVERSATIONS }, async (_, i) => ({
        id: convoId(i + 1),
        token: await tokenFor(memberDid(i + 1)),
      })),
    );
    const halves = [convos.filter((_, i) => i % 2 === 0), convos.filter((_, i) => i % 2 === 1)];
    const servers: BenchServer[] = [];
    for (const tree of [undefined, other]) {
      const server = await startServer(serverEnv(url), undefined, tree);
      cleanup.push(() => server.stop());
      servers.push(server);
    }

    const sendAll = (label: string, durationSeconds: number, round: number) =>
      Promise.all(
        servers.map((server, i) => {
          const plan: SendPlan = sendPlan(`${label}-${i}`, halves[(i + round) % 2]!);
          return load({
            title: `${i === 0 ? "this" : ref} ${label}`,
            url: server.url,
            connections: CONNECTIONS,
            durationSeconds,
            ...sendRequests(plan),
          });
        }),
      );
    await sendAll("warm-up", WARM_UP_SECONDS, 0);
    const results: [Share, Share][] = [];
    for (let round = 0; round < rounds; round++) {
      const before = await Promise.all(servers.map((server) => server.cpuMs()));
      const runs = await sendAll(`round ${round + 1}`, seconds, round);
      const after = await Promise.all(servers.map((server) => server.cpuMs()));
      results.push(
        runs.map((run, i) => ({
          requestsPerSecond: run.requestsPerSecond,
          cpuUs: cpuUsPerRequest(after[i]! - before[i]!, run),
          p99Ms: run.p99Ms,
          failed: run.non2xx + run.errors,
        })) as [Share, Share],
      );
    }
    report(ref, results);
  } finally {
    await cleanUp();
  }
}

function report(ref: string, results: [Share, Share][]): void {
  const column = (share: Share) =>
    `${share.requestsPerSecond.toFixed(0).padStart(6)} req/s ${share.cpuUs.toFixed(0).padStart(4)} µs p99 ${share.p99Ms.toFixed(1).padStart(5)} ms`;
  console.log(`\nround | this checkout                    | ${ref.padEnd(32)} | CPU per send, ${ref} / this`);
  results.forEach(([mine, theirs], round) => {
    console.log(
      `${String(round + 1).padStart(5)} | ${column(mine)} | ${column(theirs)} | ${(theirs.cpuUs / mine.cpuUs).toFixed(3)}`,
    );
  });
  const ratios = results.map(([mine, theirs]) => theirs.cpuUs / mine.cpuUs).sort((a, b) => a - b);
  const median = (ratios[Math.floor((ratios.length - 1) / 2)]! + ratios[Math.floor(ratios.length / 2)]!) / 2;
  console.log(`median ratio ${median.toFixed(3)} (above 1: this checkout spends less per send)`);
  const failed = results.flat().reduce((total, share) => total + share.failed, 0);
  if (failed > 0) console.log(`${failed} sends failed: the figures are not comparable`);
}

// The servers run in process groups of their own, which a terminal's Ctrl-C does not reach.
process.once("SIGINT", () => void cleanUp().finally(() => process.exit(130)));

main(ref, databaseUrl).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
