/**
 * compose.yaml, without Docker Compose (not installed here): it parses, and has the services, health
 * checks and environment it must have. Not run here: `docker compose config` and `up`.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { lastOf, parseDockerfile } from "./dockerfile.js";

const ROOT = join(import.meta.dirname, "../..");
const text = await readFile(join(ROOT, "compose.yaml"), "utf8");

interface Service {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}
const { services } = parse(text) as { services: Record<string, Service> };

describe("compose.yaml", () => {
  it("runs PostgreSQL with a health check of its own", () => {
    const db = services.db!;
    expect(db.image).toMatch(/^postgres:/);
    expect(db.healthcheck?.test.join(" ")).toContain("pg_isready");
    expect(db.environment?.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD/);
  });

  it("starts the server from this Dockerfile once the database is healthy, DATABASE_URL from the environment", async () => {
    const server = services.server!;
    expect(server.build).toBe(".");
    expect(server.depends_on?.db?.condition).toBe("service_healthy");
    expect(server.environment?.DATABASE_URL).toMatch(/^\$\{DATABASE_URL:-postgres:\/\/.+@db:5432\//);
    expect(server.environment?.SERVICE_DID).toBeDefined();
    // The server's health check is the image's.
    const dockerfile = parseDockerfile(await readFile(join(ROOT, "Dockerfile"), "utf8"));
    expect(lastOf(dockerfile.at(-1)!, "HEALTHCHECK")).toContain("/health/ready");
  });

  it("names only variables compose can interpolate (a literal $ must be written $$)", () => {
    const names = [...text.matchAll(/(?<!\$)\$\{([^:?}-]*)/g)].map(([, name]) => name);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(name).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
  });
});
