/**
 * The small pieces both real ts-mls clients of the tests share (test/helpers/mlsDevice.ts, test/helpers/rosterGroup.ts):
 * the suite, key packages with a basic credential, and the MLSMessage bytes of key packages and GroupInfos.
 *
 * Imports are per module (see test/helpers/mls.ts).
 */
import { createHash } from "node:crypto";
import type { ClientState } from "ts-mls/clientState.js";
import { createGroupInfoWithExternalPubAndRatchetTree } from "ts-mls/createCommit.js";
import { getCiphersuiteFromName, type CiphersuiteImpl } from "ts-mls/crypto/ciphersuite.js";
import { getCiphersuiteImpl } from "ts-mls/crypto/getCiphersuiteImpl.js";
import { defaultCapabilities } from "ts-mls/defaultCapabilities.js";
import type { GroupInfo } from "ts-mls/groupInfo.js";
import {
  generateKeyPackage,
  generateKeyPackageWithKey,
  type KeyPackage,
  type PrivateKeyPackage,
} from "ts-mls/keyPackage.js";
import { defaultLifetime } from "ts-mls/lifetime.js";
import { encodeMlsMessage } from "ts-mls/message.js";

export const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

let suite: Promise<CiphersuiteImpl> | undefined;
export const cipherSuite = () => (suite ??= getCiphersuiteImpl(getCiphersuiteFromName(SUITE)));

export const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
export const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
export const sha256Hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export interface KeyPair {
  publicPackage: KeyPackage;
  privatePackage: PrivateKeyPackage;
}

/** A key package with a basic credential of `identity`, signed with `signatureKeys` (fresh ones when not given). */
export async function keyPair(
  identity: string,
  signatureKeys?: { signKey: Uint8Array; publicKey: Uint8Array },
): Promise<KeyPair> {
  const credential = { credentialType: "basic" as const, identity: new TextEncoder().encode(identity) };
  const cs = await cipherSuite();
  return signatureKeys
    ? generateKeyPackageWithKey(credential, defaultCapabilities(), defaultLifetime, [], signatureKeys, cs)
    : generateKeyPackage(credential, defaultCapabilities(), defaultLifetime, [], cs);
}

export const keyPackageBytes = (keyPackage: KeyPackage) =>
  encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage });

export const encodeGroupInfo = (groupInfo: GroupInfo) =>
  encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo });

/** The GroupInfo of `state` with the external public key and the ratchet tree, as an MLSMessage. */
export async function groupInfoBytes(state: ClientState): Promise<Uint8Array> {
  return encodeGroupInfo(await createGroupInfoWithExternalPubAndRatchetTree(state, [], await cipherSuite()));
}
