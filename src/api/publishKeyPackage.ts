import { z } from "zod";
import { sha256Hex } from "../bytes.js";
import type { Config } from "../config.js";
import { invalidCipherSuite, invalidKeyPackage, invalidRequest, XrpcError } from "../errors.js";
import { readKeyPackage } from "../mls/keyPackage.js";
import * as schemas from "../schemas.js";
import { parseCredentialIdentity } from "../services/actingDevice.js";
import { publishKeyPackages, type NewKeyPackage } from "../services/keyPackages.js";
import { procedure } from "../xrpc.js";

/** Expiries further out are capped to this: a key package nobody fetches for 90 days is stale anyway. */
export const MAX_KEY_PACKAGE_LIFETIME_MS = 90 * 24 * 60 * 60 * 1000;

export const keyPackageInput = z.object({
  keyPackage: schemas.bytes,
  cipherSuite: schemas.cipherSuite,
  expires: z.iso.datetime({ offset: true }),
  /** The device's last-resort package for its cipher suite: handed out when nothing else is left, never consumed. */
  lastResort: z.boolean().optional(),
});

export const keyPackageExpired = (message: string) => new XrpcError(400, "KeyPackageExpired", message);

/**
 * Checks one published key package against the configuration, the clock and its publisher; hashes it and caps its
 * expiry (at 90 days and at the KeyPackage's own notAfter). Its signatures must verify with its leaf's key. The device
 * its credential names must still be checked against the caller's devices (`publishKeyPackages` does, in its statement).
 */
export async function prepareKeyPackage(
  input: z.output<typeof keyPackageInput>,
  config: Config,
  caller: string,
  now: Date,
): Promise<NewKeyPackage> {
  const bytes = input.keyPackage;
  if (bytes.length === 0) throw invalidRequest("keyPackage is empty");
  if (bytes.length > config.MAX_KEY_PACKAGE_BYTES) {
    throw invalidRequest(`keyPackage exceeds ${config.MAX_KEY_PACKAGE_BYTES} bytes`);
  }
  if (!config.CIPHER_SUITES.includes(input.cipherSuite)) throw invalidCipherSuite(input.cipherSuite);
  const expires = new Date(input.expires);
  if (expires <= now) throw keyPackageExpired(`expires (${input.expires}) is not in the future`);
  const { notAfter, deviceId, signatureKey } = await checkMlsFields(bytes, input.cipherSuite, caller, now);
  const latest = Math.min(now.getTime() + MAX_KEY_PACKAGE_LIFETIME_MS, notAfter?.getTime() ?? Infinity);
  return {
    bytes,
    hash: sha256Hex(bytes),
    cipherSuite: input.cipherSuite,
    expiresAt: new Date(Math.min(expires.getTime(), latest)),
    deviceId,
    lastResort: input.lastResort ?? false,
    signatureKey,
  };
}

/**
 * The bytes must be an MLS KeyPackage of the declared cipher suite, naming its publisher (rule 5: the caller's DID,
 * or `<callerDid>#<deviceId>`), its lifetime not over, signed by its leaf's key. Returns its notAfter, the device it
 * names and that key.
 */
async function checkMlsFields(
  bytes: Uint8Array,
  cipherSuite: string,
  caller: string,
  now: Date,
): Promise<{ notAfter: Date | undefined; deviceId: string; signatureKey: Uint8Array }> {
  const mls = readKeyPackage(bytes);
  if (!mls) throw invalidKeyPackage("keyPackage is not an MLSMessage holding a KeyPackage");
  if (mls.identity === undefined) {
    throw invalidKeyPackage("the key package's credential is not a basic credential with a UTF-8 identity");
  }
  const named = parseCredentialIdentity(mls.identity);
  if (named?.did !== caller) {
    throw invalidKeyPackage("the key package's credential identity does not name the caller (or one of its devices)");
  }
  if (mls.cipherSuite !== cipherSuite) {
    throw invalidRequest(`cipherSuite ${cipherSuite} disagrees with the key package's ${mls.cipherSuite}`);
  }
  if (mls.notAfter && mls.notAfter <= now) {
    throw keyPackageExpired(`the key package's lifetime ended at ${mls.notAfter.toISOString()}`);
  }
  if (!(await mls.verifySignatures())) {
    throw invalidKeyPackage("the key package's signatures do not verify with its leaf's signature key");
  }
  return { notAfter: mls.notAfter, deviceId: named.deviceId, signatureKey: mls.signatureKey };
}

export default procedure({
  name: "publishKeyPackage",
  input: keyPackageInput.extend({ idempotencyKey: schemas.idempotencyKey.optional() }),
  async handler(input, { app, caller, db, now }) {
    const pkg = await prepareKeyPackage(input, app.config, caller, now);
    await publishKeyPackages(db, caller, [pkg], now);
    return { success: true };
  },
});
