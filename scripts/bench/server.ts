import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { freePort } from "../freePort.js";

export interface BenchServer {
  url: string;
  pid: number;
  /** Resident set size of the server process now, in bytes. */
  rss(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts the Node entry (`tsx src/entry/node.ts`) as a child process and waits until it is ready. */
export async function startServer(env: Record<string, string>): Promise<BenchServer> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "src/entry/node.ts"], {
    env: { ...process.env, ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "ignore", "inherit"],
    detached: true,
  });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt++) {
    try {
      if ((await fetch(`${url}/health/ready`)).ok) break;
    } catch {
      // not listening yet
    }
    if (attempt > 200 || child.exitCode !== null) throw new Error("server did not start");
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
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      process.kill(-child.pid!, "SIGTERM");
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      if (child.exitCode === null) process.kill(-child.pid!, "SIGKILL");
    },
  };
}
