import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../freePort.js";

export interface BenchServer {
  url: string;
  pid: number;
  /** Resident set size of the server process now, in bytes. */
  rss(): Promise<number>;
  /** CPU time the server process has used so far (user and system), in ms: noise-proof next to req/s. */
  cpuMs(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The node arguments of `npm start` (package.json), so the bench measures the process as deployed: its
 * `--max-old-space-size` caps the heap, which also makes V8 collect the old generation at ~1.6x the live
 * heap instead of ~4x (RSS under load about 160 MB instead of 300-450 MB), and `--max-semi-space-size` the young
 * generation's; its `--wasm-num-compilation-tasks=1`
 * gives V8 one WebAssembly compile task instead of up to 128: on PGlite each task's thread kept the
 * compiler's memory in its own malloc arena (30-50 MB of RSS at ready).
 */
async function startArgs(tree: string): Promise<string[]> {
  const { scripts } = JSON.parse(await readFile(join(tree, "package.json"), "utf8"));
  const [node, ...args] = (scripts.start as string).split(/\s+/);
  if (node !== "node") throw new Error(`package.json start must run node, not ${node}`);
  return args;
}

/** This checkout: the tree whose server the bench starts unless told another. */
const THIS_TREE = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Starts the Node entry as `npm start` runs it, as a child process, and waits until it is ready.
 * `env` adds to this process's environment; a variable set to undefined is left out. With
 * `cpuProfileDir`, V8 profiles the server's CPU and writes a `.cpuprofile` there when it stops. `tree` is the
 * checkout whose server it is (another version's, for `bench:compare`).
 */
export async function startServer(
  env: Record<string, string | undefined>,
  cpuProfileDir?: string,
  tree = THIS_TREE,
): Promise<BenchServer> {
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, PORT: String(port), HOST: "127.0.0.1" };
  for (const [name, value] of Object.entries(childEnv)) if (value === undefined) delete childEnv[name];
  const profile = cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfileDir}`] : [];
  const child: ChildProcess = spawn(process.execPath, [...profile, ...(await startArgs(tree))], {
    cwd: tree,
    env: childEnv,
    stdio: ["ignore", "ignore", "inherit"],
    detached: true,
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    signalGroup(child, "SIGTERM");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    if (child.exitCode === null && child.signalCode === null) signalGroup(child, "SIGKILL");
  };
  for (let attempt = 0; ; attempt++) {
    try {
      if ((await fetch(`${url}/health/ready`)).ok) break;
    } catch {
      // not listening yet
    }
    if (attempt > 200 || child.exitCode !== null) {
      await stop();
      throw new Error("server did not start");
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const serverPid = child.pid!;
  return {
    url,
    pid: serverPid,
    rss: async () => {
      const status = await readFile(`/proc/${serverPid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
    },
    cpuMs: async () => {
      // Fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name): utime and stime, in clock ticks (100/s).
      const fields = (await readFile(`/proc/${serverPid}/stat`, "utf8")).split(") ")[1]!.split(" ");
      return (Number(fields[11]) + Number(fields[12])) * 10;
    },
    stop,
  };
}

/** Signals the server's process group; one already gone (ESRCH) is not an error. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}
