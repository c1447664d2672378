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
    for (const name of ["DATABASE_URL", "DEV_JWT_SECRET", "SERVICE_DID", "NODE_ENV", "DEV_TOKENS"]) {
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
    ["RETENTION_DAYS", "1.5"],
  ])("refuses %s=%s with a one-line ConfigError naming the variable", (name, value) => {
    const error = configError({ [name]: value });
    expect(error.message).toContain(name);
    expect(error.message).not.toContain("\n");
  });

  it("names every bad variable on one line", () => {
    const error = configError({ PORT: "x", LOG_LEVEL: "y" });
    expect(error.message).toMatch(/PORT.*LOG_LEVEL|LOG_LEVEL.*PORT/);
    expect(error.message).not.toContain("\n");
  });
});

describe("Node entry", () => {
  it("exits non-zero with a one-line message when a variable is bad", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "mls-config-"));
    try {
      const child = spawn("node_modules/.bin/tsx", ["src/entry/node.ts"], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, PORT: "notaport", PGLITE_DIR: dataDir },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));

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
