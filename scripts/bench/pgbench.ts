import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface PgbenchResult {
  clients: number;
  tps: number;
  p50Ms: number;
  p99Ms: number;
}

function connectionArgs(databaseUrl: string): { args: string[]; env: NodeJS.ProcessEnv } {
  const url = new URL(databaseUrl);
  return {
    args: [
      "-h",
      url.hostname,
      "-p",
      url.port || "5432",
      "-U",
      decodeURIComponent(url.username || "postgres"),
      url.pathname.slice(1),
    ],
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
  };
}

/** Runs a custom pgbench script (prepared statements, no vacuum) at one client count. */
export async function pgbench(
  databaseUrl: string,
  script: string,
  clients: number,
  seconds: number,
): Promise<PgbenchResult> {
  const dir = await mkdtemp(join(tmpdir(), "mls-pgbench-"));
  try {
    const file = join(dir, "script.sql");
    await writeFile(file, script);
    const { args, env } = connectionArgs(databaseUrl);
    const { stdout } = await run(
      "pgbench",
      [
        "-n",
        "-M",
        "prepared",
        "-f",
        file,
        "-c",
        String(clients),
        "-j",
        String(Math.min(clients, 2)),
        "-T",
        String(seconds),
        "-l",
        "--log-prefix",
        join(dir, "tx"),
        ...args,
      ],
      { env, maxBuffer: 16 * 1024 * 1024 },
    );
    const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? 0);
    const latencies: number[] = [];
    for (const name of (await readdir(dir)).filter((entry) => entry.startsWith("tx"))) {
      for (const line of (await readFile(join(dir, name), "utf8")).split("\n")) {
        const micros = Number(line.split(" ")[2]);
        if (micros > 0) latencies.push(micros / 1000);
      }
    }
    latencies.sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
    return { clients, tps, p50Ms: at(0.5), p99Ms: at(0.99) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The best throughput over several client counts: what this database can do on this machine. */
export async function bestPgbench(databaseUrl: string, script: string, clientCounts: number[], seconds: number) {
  const results: PgbenchResult[] = [];
  for (const clients of clientCounts) results.push(await pgbench(databaseUrl, script, clients, seconds));
  return { best: results.reduce((a, b) => (b.tps > a.tps ? b : a)), all: results };
}
