/**
 * Devices and per-device key packages for the key package tests: devices are rows of `devices` inserted directly
 * (the devices API is not what these tests test), packages are real ts-mls KeyPackages naming `<did>#<deviceId>`.
 */
import { afterAll, beforeAll } from "vitest";
import { encodeBase64 } from "../../src/bytes.js";
import type { Queryable } from "../../src/db/driver.js";
import { credentialIdentity } from "../../src/services/actingDevice.js";
import type { HandedOutKeyPackage } from "../../src/services/keyPackageClaims.js";
import { start, type BattleServer } from "../battle/server.js";
import { testDatabase, tokenFor } from "../helpers/context.js";
import { makeKeyPackage, TEST_CIPHER_SUITE } from "../helpers/mls.js";
import { Api } from "../messaging/client.js";

export const SUITE = TEST_CIPHER_SUITE;

/** Registers `deviceId` to `did`, as registerDevice would. */
export async function registerDevice(db: Queryable, did: string, deviceId: string): Promise<void> {
  await db.query(
    `INSERT INTO devices (did, device_id, name, created_at, last_seen_at) VALUES ($1, $2, $2, now(), now())`,
    [did, deviceId],
  );
}

/** Marks the device revoked (only the row: revokeDevice's deletion of its packages is not simulated). */
export async function revokeDevice(db: Queryable, did: string, deviceId: string): Promise<void> {
  await db.query(`UPDATE devices SET revoked_at = now() WHERE did = $1 AND device_id = $2`, [did, deviceId]);
}

/** A fresh real KeyPackage (an MLSMessage) whose basic credential names the device ('' = the implicit one). */
export const devicePackage = (did: string, deviceId = "") => makeKeyPackage(credentialIdentity(did, deviceId));

/** `count` fresh packages of one device. */
export const devicePackages = (did: string, deviceId: string, count: number) =>
  Promise.all(Array.from({ length: count }, () => devicePackage(did, deviceId)));

/** One item of publishKeyPackages (or the body of publishKeyPackage), expiring in a day from `now`. */
export function publishItem(
  bytes: Uint8Array,
  { lastResort, now = new Date() }: { lastResort?: boolean; now?: Date } = {},
) {
  return {
    keyPackage: encodeBase64(bytes),
    cipherSuite: SUITE,
    expires: new Date(now.getTime() + 86_400_000).toISOString(),
    ...(lastResort !== undefined && { lastResort }),
  };
}

/** One item of publishKeyPackages (or the input of publishKeyPackage) for the typed client. */
export function publishInput(
  keyPackage: Uint8Array,
  { lastResort, now = new Date() }: { lastResort?: boolean; now?: Date } = {},
) {
  return {
    keyPackage,
    cipherSuite: SUITE,
    expires: new Date(now.getTime() + 86_400_000).toISOString(),
    ...(lastResort !== undefined && { lastResort }),
  };
}

export type HandedOut = HandedOutKeyPackage;

export interface KeyPackagesAnswer {
  keyPackages: HandedOut[];
  missing: string[];
  deferred?: string[];
}

/** The stored rows of an owner's packages, oldest first. */
export const storedPackages = (db: Queryable, owner: string) =>
  db.query<{
    hash: string;
    device_id: string;
    last_resort: boolean;
    handed_out_to: string | null;
    consumed_at: Date | null;
    expires_at: Date;
  }>(
    `SELECT hash, device_id, last_resort, handed_out_to, consumed_at, expires_at FROM key_packages
      WHERE owner_did = $1 ORDER BY created_at, id`,
    [owner],
  );

/**
 * The real server process on real PostgreSQL for one test file, started before its tests and stopped after them:
 * `db` to read rows, `api()` the typed client over real HTTP (one attempt per call, every answer checked); raw, for
 * requests the typed client does not make (no idempotency key): `call` an XRPC method as a DID, `getKeyPackages`.
 */
export function realServer() {
  const db = testDatabase(5);
  let server: BattleServer;
  let typed: Api;
  beforeAll(async () => {
    server = await start();
    typed = new Api(server.url, { retry: { deadlineMs: 30_000 } });
  });
  afterAll(async () => {
    await server?.stop();
    await db.close();
  });

  async function call<T>(
    did: string,
    method: string,
    init: { body?: unknown; query?: URLSearchParams; headers?: Record<string, string> } = {},
  ) {
    const response = await fetch(`${server.url}/xrpc/blue.catbird.mls.${method}${init.query ? `?${init.query}` : ""}`, {
      method: init.body === undefined ? "GET" : "POST",
      headers: { Authorization: `Bearer ${await tokenFor(did)}`, "Content-Type": "application/json", ...init.headers },
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
    });
    return { status: response.status, body: (await response.json()) as T };
  }

  const getKeyPackages = (caller: string, dids: string[]) =>
    call<KeyPackagesAnswer>(caller, "getKeyPackages", { query: new URLSearchParams(dids.map((did) => ["dids", did])) });

  return { db, call, getKeyPackages, api: () => typed };
}
