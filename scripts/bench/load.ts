/**
 * HTTP load from wrk (C, with its requests built by LuaJIT), one thread. The load generator shares this machine's
 * two cores with the server and PostgreSQL: autocannon, in Node, spent 70-150 µs of CPU per request (as much as
 * half the server's own), which pgbench's C client, the baseline, does not; wrk spends a few.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface LoadResult {
  requestsPerSecond: number;
  /** Requests answered in all. */
  requests: number;
  p50Ms: number;
  p99Ms: number;
  /** Answers with a status of 400 or more. */
  non2xx: number;
  /** Connect, read and write errors and timeouts. */
  errors: number;
}

/** The server's CPU per answered request, in µs, from the CPU time (ms) it used during `run`. */
export const cpuUsPerRequest = (cpuMs: number, run: LoadResult) => (cpuMs * 1000) / Math.max(1, run.requests);

export interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds: number;
  title: string;
  /**
   * Lua run once before the load: the constants and tables `request` reads. Values from JavaScript go in through
   * `luaString` and `luaStrings`.
   */
  setup?: string;
  /**
   * Lua: the body of wrk's `request()` function, which builds each request (`return wrk.format(method, path,
   * headers, body)`); `n` is the request's number, 1, 2, ... Leave it out for GET `url` as it is.
   */
  request?: string;
}

/** What `done` prints: one line wrk writes after the run, read back here. */
const RESULT_MARK = "WRK_RESULT";

const script = ({ setup = "", request }: LoadOptions) => `${setup}
-- -1: wrk calls request() once to check the script before the run, so the first request sent is n = 1.
local n = -1
${request ? `request = function()\n  n = n + 1\n  ${request}\nend` : ""}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("\\n${RESULT_MARK} %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`;

/** Drives the server with wrk and reports throughput and latency percentiles. */
export async function load(options: LoadOptions): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), "bench-wrk-"));
  try {
    const file = join(dir, "load.lua");
    await writeFile(file, script(options));
    console.log(`  ${options.title}: ${options.connections} connections, ${options.durationSeconds} s`);
    const args = ["-t1", `-c${options.connections}`, `-d${options.durationSeconds}s`, "--timeout", "10s", "-s", file];
    const { stdout } = await run("wrk", [...args, options.url], { maxBuffer: 1 << 20 }).catch((error: unknown) => {
      const missing = (error as { code?: string }).code === "ENOENT";
      throw missing ? new Error("the bench needs wrk on PATH (Debian: apt-get install wrk)") : error;
    });
    const line = stdout.split("\n").find((text) => text.startsWith(RESULT_MARK));
    if (!line) throw new Error(`wrk printed no result:\n${stdout}`);
    const [requests, durationUs, connect, read, write, status, timeout, p50Us, p99Us] = line
      .slice(RESULT_MARK.length)
      .trim()
      .split(" ")
      .map(Number) as [number, number, number, number, number, number, number, number, number];
    return {
      requestsPerSecond: requests / (durationUs / 1e6),
      requests,
      p50Ms: p50Us / 1000,
      p99Ms: p99Us / 1000,
      non2xx: status,
      errors: connect + read + write + timeout,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** An ASCII JavaScript string as a Lua string literal (JSON's escapes for quotes, backslashes and controls are Lua's too). */
export const luaString = (text: string) => JSON.stringify(text);

/** JavaScript strings as a Lua table literal (1-based). */
export const luaStrings = (texts: readonly string[]) => `{${texts.map(luaString).join(",")}}`;
