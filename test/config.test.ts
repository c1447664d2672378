import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, RFC9420_CIPHER_SUITES } from "../src/config.js";

const ROOT = new URL("..", import.meta.url);

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("gives every variable its default on an empty environment", () => {
    expect(loadConfig({})).toMatchObject({
      PORT: 3000,
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      DATABASE_DRIVER: "postgres",
      DATABASE_POOL_MAX: 10,
      DATABASE_PREPARE: true,
      PGLITE_DIR: "./data",
      MIGRATE_ON_START: true,
      ADMIN_DIDS: [],
      BODY_LIMIT_BYTES: 2 * 1024 * 1024,
      REQUEST_TIMEOUT_MS: 30_000,
      MAX_CIPHERTEXT_BYTES: 1024 * 1024,
      MAX_KEY_PACKAGE_BYTES: 64 * 1024,
      MAX_MEMBERS_PER_CONVO: 1000,
      CIPHER_SUITES: [...RFC9420_CIPHER_SUITES],
      KEY_PACKAGE_THRESHOLD: 10,
      IDEMPOTENCY_TTL_SECONDS: 86_400,
      IDEMPOTENCY_WAIT_MS: 10_000,
      WELCOME_GRACE_SECONDS: 300,
      RETENTION_DAYS: 30,
      CLEANUP_INTERVAL_SECONDS: 300,
      RATE_LIMIT_PER_DID: 1200,
      BODY_READ_TIMEOUT_MS: 10_000,
      SERVER_HEADERS_TIMEOUT_MS: 10_000,
      SERVER_REQUEST_TIMEOUT_MS: 30_000,
      SERVER_KEEPALIVE_TIMEOUT_MS: 5_000,
      SERVER_MAX_CONNECTIONS: 4096,
      MIGRATE_LOCK_TIMEOUT_MS: 1000,
      MIGRATE_ATTEMPTS: 30,
    });
  });

  it("is mirrored by .env.example: every variable, set to its default", async () => {
    const text = await readFile(new URL(".env.example", ROOT), "utf8");
    const assignments = text.split("\n").filter((line) => /^[A-Z_]+=/.test(line));
    const env = Object.fromEntries(
      assignments.map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
    const defaults = loadConfig({});
    expect(Object.keys(env).sort()).toEqual(Object.keys(defaults).sort());
    expect(loadConfig(env)).toEqual(defaults);
    // The variables without a default appear commented out, with an example value.
    for (const name of [
      "DATABASE_URL",
      "DEV_JWT_SECRET",
      "SERVICE_DID",
      "NODE_ENV",
      "DEV_TOKENS",
      "METRICS_TOKEN",
      "METRICS_PORT",
    ]) {
      expect(text).toMatch(new RegExp(`^# ${name}=\\S`, "m"));
    }
  });

  it("treats empty strings as unset and ignores variables it does not know", () => {
    const config = loadConfig({ PORT: "", DATABASE_URL: "", HOME: "/root" });
    expect(config.PORT).toBe(3000);
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config).not.toHaveProperty("HOME");
  });

  it("parses numbers, booleans and lists", () => {
    const config = loadConfig({
      PORT: "8080",
      DATABASE_PREPARE: "off",
      MIGRATE_ON_START: "0",
      ADMIN_DIDS: "did:plc:admin1, did:web:example.com",
      CIPHER_SUITES: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256,",
    });
    expect(config).toMatchObject({
      PORT: 8080,
      DATABASE_PREPARE: false,
      MIGRATE_ON_START: false,
      ADMIN_DIDS: ["did:plc:admin1", "did:web:example.com"],
      CIPHER_SUITES: ["MLS_128_DHKEMP256_AES128GCM_SHA256_P256"],
    });
  });

  it.each([
    ["PORT", "notaport"],
    ["PORT", "70000"],
    ["LOG_LEVEL", "loud"],
    ["DATABASE_URL", "not a url"],
    ["DATABASE_DRIVER", "mysql"],
    ["DATABASE_PREPARE", "maybe"],
    ["DEV_JWT_SECRET", "short"],
    ["SERVICE_DID", "example.com"],
    ["ADMIN_DIDS", "did:plc:ok,not-a-did"],
    ["BODY_LIMIT_BYTES", "10"],
    ["BODY_LIMIT_BYTES", String(32 * 1024 * 1024 + 1)],
    ["RETENTION_DAYS", "1.5"],
    ["MAX_PAGE_BYTES", String(32 * 1024 * 1024 + 1)],
    ["MAX_CIPHERTEXT_BYTES", String(8 * 1024 * 1024 + 1)],
    ["MAX_MEMBERS_PER_CONVO", "15888"],
  ])("refuses %s=%s with a one-line ConfigError naming the variable", (name, value) => {
    const error = configError({ [name]: value });
    expect(error.message).toContain(name);
    expect(error.message).not.toContain("\n");
  });

  describe("in production (NODE_ENV=production)", () => {
    const DATABASE_URL = "postgres://postgres@127.0.0.1:5432/mls";
    const SERVICE_DID = "did:web:mls.example.com";

    it("refuses to run without DATABASE_URL (embedded PGlite keeps data on one instance)", () => {
      const error = configError({ NODE_ENV: "production", SERVICE_DID });
      expect(error.message).toContain("DATABASE_URL");
      expect(error.message).not.toContain("\n");
    });

    it("refuses to run without an auth mode (SERVICE_DID or DEV_JWT_SECRET)", () => {
      const error = configError({ NODE_ENV: "production", DATABASE_URL });
      expect(error.message).toContain("SERVICE_DID");
      expect(error.message).not.toContain("DATABASE_URL");
    });

    it("runs with a database and either auth mode; elsewhere neither is required", () => {
      expect(loadConfig({ NODE_ENV: "production", DATABASE_URL, SERVICE_DID }).NODE_ENV).toBe("production");
      expect(
        loadConfig({ NODE_ENV: "production", DATABASE_URL, DEV_JWT_SECRET: "0123456789abcdef" }).DATABASE_URL,
      ).toBe(DATABASE_URL);
      expect(loadConfig({ NODE_ENV: "development" }).DATABASE_URL).toBeUndefined();
    });
  });

  it("refuses a MAX_PAGE_BYTES whose pages the typed client would refuse (over 64 MiB)", () => {
    expect(loadConfig({ MAX_PAGE_BYTES: String(32 * 1024 * 1024) }).MAX_PAGE_BYTES).toBe(32 * 1024 * 1024);
    expect(configError({ MAX_PAGE_BYTES: String(64 * 1024 * 1024) }).message).toBe(
      "invalid configuration: MAX_PAGE_BYTES: must be at most 33554432 (32 MiB): the typed client refuses answers over 64 MiB",
    );
  });

  it("refuses key package sizes whose one DID's answer the typed client could not read, envelopes counted", () => {
    // 24 packages of 1,046,775 bytes: 24 x (1,395,700 base64 + 2,400 envelope) = 33,554,400, under 32 MiB.
    const devices = { MAX_DEVICES_PER_DID: "23", MAX_KEY_PACKAGE_BYTES: "1046775" };
    expect(loadConfig(devices).MAX_KEY_PACKAGE_BYTES).toBe(1_046_775);
    expect(configError({ ...devices, MAX_KEY_PACKAGE_BYTES: "1046776" }).message).toContain("MAX_KEY_PACKAGE_BYTES");
    expect(configError({ ...devices, MAX_DEVICES_PER_DID: "24" }).message).toContain("MAX_KEY_PACKAGE_BYTES");
    // Small packages for very many devices: the envelopes alone overflow the answer.
    expect(configError({ MAX_DEVICES_PER_DID: "125000", MAX_KEY_PACKAGE_BYTES: "200" }).message).toContain(
      "MAX_KEY_PACKAGE_BYTES",
    );
  });

  it("takes up to 15,887 members per conversation: getConvos answers their views (2,112 bytes each at most) whole", () => {
    expect(loadConfig({ MAX_MEMBERS_PER_CONVO: "15887" }).MAX_MEMBERS_PER_CONVO).toBe(15_887);
  });

  it("keeps a pool connection beside the send lanes' batches, on a database server only (PGlite has no pool)", () => {
    const url = { DATABASE_URL: "postgres://db.example/mls" };
    expect(loadConfig({ ...url, DATABASE_POOL_MAX: "3", SEND_BATCH_LANES: "2" }).SEND_BATCH_LANES).toBe(2);
    expect(configError({ ...url, DATABASE_POOL_MAX: "2", SEND_BATCH_LANES: "2" }).message).toBe(
      "invalid configuration: SEND_BATCH_LANES: 2 must be below DATABASE_POOL_MAX (2): each lane's batch takes a connection",
    );
    expect(loadConfig({ DATABASE_POOL_MAX: "2", SEND_BATCH_LANES: "2" }).SEND_BATCH_LANES).toBe(2);
  });

  it("names every bad variable on one line", () => {
    const error = configError({ PORT: "x", LOG_LEVEL: "y" });
    expect(error.message).toMatch(/PORT.*LOG_LEVEL|LOG_LEVEL.*PORT/);
    expect(error.message).not.toContain("\n");
  });
});

/** Starts the Node entry with `env` only and waits for it to exit; what it printed, and its code. */
async function runNode(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn("node_modules/.bin/tsx", ["src/entry/node.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk));
  // A server that starts instead of exiting is stopped before the test gives up on it.
  const kill = setTimeout(() => child.kill("SIGKILL"), 45_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(kill);
  return { code, stdout, stderr };
}

describe("Node entry in production", () => {
  it.each([
    ["DATABASE_URL", { SERVICE_DID: "did:web:mls.example.com" }],
    ["SERVICE_DID", { DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres" }],
  ])("exits 1 with one line naming %s instead of starting", async (missing, env) => {
    const dataDir = await mkdtemp(join(tmpdir(), "mls-production-"));
    try {
      const { code, stdout, stderr } = await runNode({
        NODE_ENV: "production",
        PORT: "0",
        PGLITE_DIR: dataDir,
        ...env,
      });
      expect(code).toBe(1);
      const lines = stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(missing);
      expect(stdout).not.toContain("listening");
      expect(await readdir(dataDir)).toEqual([]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("Node entry", () => {
  it("exits non-zero with a one-line message when a variable is bad", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "mls-config-"));
    try {
      const { code, stdout, stderr } = await runNode({ PORT: "notaport", PGLITE_DIR: dataDir });

      expect(code).not.toBe(0);
      expect(code).not.toBeNull();
      const lines = stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("PORT");
      expect(stdout).not.toContain("listening");
      // It failed before opening a database: nothing but the development secret under the data directory.
      expect((await readdir(dataDir)).filter((name) => name !== "dev-jwt-secret")).toEqual([]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
