/**
 * Starts a server process (Node, Deno or wrangler/workerd) for the runtime tests and stops it again.
 * Each runs in its own process group, because wrangler starts several processes (node, esbuild,
 * workerd): stopping means signalling the whole group, and killing it if it does not go.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const OUTPUT_LIMIT = 64 * 1024;
/** Process groups still running, killed if the test process exits without stopping them. */
const running = new Set<number>();
process.once("exit", () => {
  for (const pid of running) signalGroup(pid, "SIGKILL");
});

export interface ServerOptions {
  command: string;
  args: string[];
  env: Record<string, string>;
  port: number;
  /** The working directory; the repository root unless given. */
  cwd?: string;
  /** How long start-up may take before the test gives up. */
  startTimeoutMs?: number;
}

export interface RunningServer {
  baseUrl: string;
  child: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited: Promise<number | null>;
  /** Everything the process printed, for failure messages and log assertions. */
  output(): string;
  /** Sends `signal` to the process only (not its group), for tests of its own shutdown. */
  signal(signal: NodeJS.Signals): void;
  /** Stops the whole group: SIGTERM, then SIGKILL after `graceMs`. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

/** Signals every process in the group; signal 0 only asks whether any is left. */
function signalGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // the group is gone
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startServer({
  command,
  args,
  env,
  port,
  cwd = ROOT,
  startTimeoutMs = 60_000,
}: ServerOptions): Promise<RunningServer> {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = child.pid!;
  running.add(pid);
  let output = "";
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-OUTPUT_LIMIT);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
    // A command that cannot start (missing binary) reports here instead of exiting.
    child.once("error", (error) => {
      output += String(error);
      resolve(null);
    });
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const stop = async (graceMs = 10_000) => {
    if (!running.has(pid)) return;
    signalGroup(pid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    // The group outlives its leader when children linger: wait for all of it.
    while (Date.now() < deadline && signalGroup(pid, 0)) await sleep(100);
    signalGroup(pid, "SIGKILL");
    running.delete(pid);
    await exited;
  };

  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (hasExited) {
      await stop();
      throw new Error(`${command} exited during start-up:\n${output}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${command} was not ready within ${startTimeoutMs} ms:\n${output}`);
    }
    const ready = await fetch(`${baseUrl}/health/ready`).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) break;
    await sleep(200);
  }

  return {
    baseUrl,
    child,
    exited,
    output: () => output,
    signal: (signal) => void child.kill(signal),
    stop,
  };
}
