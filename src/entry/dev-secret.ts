import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Env } from "../config.js";

/**
 * The HS256 secret for development tokens. `DEV_JWT_SECRET` wins; otherwise, outside production, one
 * is generated once per data directory (`<PGLITE_DIR>/dev-jwt-secret`) so that `npm start` and
 * `npm run token` agree with no setup. None is generated in production, with `DEV_TOKENS=off`, or
 * when `SERVICE_DID` is set (a real deployment) unless `ALLOW_DEV_TOKENS` says otherwise.
 */
export async function devSecret(env: Env): Promise<string | undefined> {
  const serviceOnly = env.SERVICE_DID && !["true", "1", "on", "yes"].includes(env.ALLOW_DEV_TOKENS ?? "");
  if (env.DEV_JWT_SECRET || env.NODE_ENV === "production" || env.DEV_TOKENS === "off" || serviceOnly) {
    return env.DEV_JWT_SECRET;
  }
  const dir = env.PGLITE_DIR && env.PGLITE_DIR !== ":memory:" ? env.PGLITE_DIR : "./data";
  const file = join(dir, "dev-jwt-secret");
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    const secret = randomBytes(32).toString("hex");
    await mkdir(dir, { recursive: true });
    await writeFile(file, secret, { mode: 0o600, flag: "wx" }).catch(async () => {});
    return (await readFile(file, "utf8")).trim();
  }
}
