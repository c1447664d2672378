import { z } from "zod";
import { sha256Hex } from "../bytes.js";
import type { Config } from "../config.js";
import { invalidCipherSuite, invalidRequest, XrpcError } from "../errors.js";
import { readKeyPackage } from "../mls/keyPackage.js";
import * as schemas from "../schemas.js";
import { publishKeyPackages, type NewKeyPackage } from "../services/keyPackages.js";
import { procedure } from "../xrpc.js";

/** Expiries further out are capped to this: a key package nobody fetches for 90 days is stale anyway. */
export const MAX_KEY_PACKAGE_LIFETIME_MS = 90 * 24 * 60 * 60 * 1000;

export const keyPackageInput = z.object({
  keyPackage: schemas.bytes,
  cipherSuite: schemas.cipherSuite,
  expires: z.iso.datetime({ offset: true }),
});

export const keyPackageExpired = (message: string) => new XrpcError(400, "KeyPackageExpired", message);

/**
 * Checks one published key package against the configuration and the clock; hashes it and caps its expiry
 * (at 90 days, and at the KeyPackage's own notAfter when the bytes are MLS). Opaque bytes are accepted as they are.
 */
export function prepareKeyPackage(input: z.output<typeof keyPackageInput>, config: Config, now: Date): NewKeyPackage {
  const bytes = input.keyPackage;
  if (bytes.length === 0) throw invalidRequest("keyPackage is empty");
  if (bytes.length > config.MAX_KEY_PACKAGE_BYTES) {
    throw invalidRequest(`keyPackage exceeds ${config.MAX_KEY_PACKAGE_BYTES} bytes`);
  }
  if (!config.CIPHER_SUITES.includes(input.cipherSuite)) throw invalidCipherSuite(input.cipherSuite);
  const expires = new Date(input.expires);
  if (expires <= now) throw keyPackageExpired(`expires (${input.expires}) is not in the future`);
  const notAfter = checkMlsFields(bytes, input.cipherSuite, now);
  const latest = Math.min(now.getTime() + MAX_KEY_PACKAGE_LIFETIME_MS, notAfter?.getTime() ?? Infinity);
  return {
    bytes,
    hash: sha256Hex(bytes),
    cipherSuite: input.cipherSuite,
    expiresAt: new Date(Math.min(expires.getTime(), latest)),
  };
}

/** When the bytes are an MLS KeyPackage: its cipher suite must be the declared one and its lifetime not over. */
function checkMlsFields(bytes: Uint8Array, cipherSuite: string, now: Date): Date | undefined {
  const mls = readKeyPackage(bytes);
  if (!mls) return undefined;
  if (mls.cipherSuite !== cipherSuite) {
    throw invalidRequest(`cipherSuite ${cipherSuite} disagrees with the key package's ${mls.cipherSuite}`);
  }
  if (mls.notAfter && mls.notAfter <= now) {
    throw keyPackageExpired(`the key package's lifetime ended at ${mls.notAfter.toISOString()}`);
  }
  return mls.notAfter;
}

export default procedure({
  name: "publishKeyPackage",
  input: keyPackageInput.extend({ idempotencyKey: schemas.idempotencyKey.optional() }),
  async handler(input, { app, caller, db, now }) {
    const pkg = prepareKeyPackage(input, app.config, now);
    await publishKeyPackages(db, caller, [pkg], now);
    return { success: true };
  },
});
