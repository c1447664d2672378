/**
 * The container image, without a Docker engine (none runs on these machines): the Dockerfile's shape,
 * and the final stage's start command run directly, on a directory laid out as that stage's COPY lines
 * lay out /app, against this run's database. Not run here: `docker build` itself and the base images.
 */
import { spawn } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, inject, it } from "vitest";
import { startServer } from "../runtimes/server.js";
import { freePort } from "../setup/postgres.js";
import { envOf, execForm, lastOf, parseDockerfile } from "./dockerfile.js";

const ROOT = join(import.meta.dirname, "../..");
const stages = parseDockerfile(await readFile(join(ROOT, "Dockerfile"), "utf8"));
const final = stages.at(-1)!;

/** Runs a command to its end; resolves with its exit code and output. */
function run(argv: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const [command, ...args] = argv;
  // The image's `node` is this Node.
  const child = spawn(command === "node" ? process.execPath : command!, args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk));
  return new Promise<{ code: number | null; output: string }>((resolve) =>
    child.once("close", (code) => resolve({ code, output })),
  );
}

describe("Dockerfile", () => {
  it("builds in stages and runs as an unprivileged user", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(lastOf(final, "USER")).toBeDefined();
    expect(["root", "0"]).not.toContain(lastOf(final, "USER"));
  });

  it("checks health on /health/ready", () => {
    expect(execForm(lastOf(final, "HEALTHCHECK")!).join(" ")).toContain("/health/ready");
  });

  it("copies nothing from the build context that .dockerignore leaves out", async () => {
    const ignored = new Set((await readFile(join(ROOT, ".dockerignore"), "utf8")).split("\n"));
    expect(ignored.has("node_modules")).toBe(true);
    const fromContext = stages
      .flatMap((stage) => stage.instructions)
      .filter(({ keyword, args }) => keyword === "COPY" && !args.startsWith("--from="))
      .flatMap(({ args }) => args.split(/\s+/).slice(0, -1));
    expect(fromContext.length).toBeGreaterThan(0);
    for (const source of fromContext) expect(ignored.has(source.split("/")[0]!), source).toBe(false);
  });

  it("its start command serves /health/ready on the database, and its health check says so", async () => {
    const app = await mkdtemp(join(tmpdir(), "mls-image-"));
    try {
      // What the build stage's `npm run build` makes, where the final stage's COPY lines put it.
      const built = await run(["npm", "run", "-s", "build", "--", "--outDir", join(app, "dist")]);
      expect(built.code, built.output).toBe(0);
      await cp(join(ROOT, "db/migrations"), join(app, "db/migrations"), { recursive: true });
      await cp(join(ROOT, "package.json"), join(app, "package.json"));
      await symlink(join(ROOT, "node_modules"), join(app, "node_modules"));

      const port = await freePort();
      const env = {
        ...envOf(final),
        HOST: "127.0.0.1",
        PORT: String(port),
        DATABASE_URL: inject("databaseUrl"),
        SERVICE_DID: "did:web:mls.example.com",
      };
      const [command, ...args] = execForm(lastOf(final, "CMD")!);
      const healthCheck = execForm(lastOf(final, "HEALTHCHECK")!);
      const server = await startServer({
        command: command === "node" ? process.execPath : command!,
        args,
        env,
        port,
        cwd: app,
      });
      try {
        expect((await fetch(`${server.baseUrl}/health/ready`)).status).toBe(200);
        expect(server.output()).toContain('"environment":"production"');
        expect((await run(healthCheck, { env })).code).toBe(0);
      } finally {
        await server.stop();
      }
      expect(await server.exited).toBe(0);
      expect((await run(healthCheck, { env })).code).toBe(1);
    } finally {
      await rm(app, { recursive: true, force: true });
    }
  }, 240_000);
});
