import { ciphersuites, type CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { decodeKeyPackage, verifyKeyPackage, type KeyPackage } from "ts-mls/keyPackage.js";
import { verifyLeafNodeSignatureKeyPackage } from "ts-mls/leafNode.js";
import { decodeMlsMessage } from "ts-mls/message.js";
import { RFC9420_CIPHER_SUITES } from "../config.js";
import { decodeExactly, utf8 } from "./decode.js";
import { verifiesWith } from "./signature.js";

export interface KeyPackageInfo {
  /** The RFC 9420 §17.1 name for ids 1–7; any other id as four hex digits, e.g. `0x004d`. */
  cipherSuite: string;
  /** The leaf node's lifetime; each bound is left out when it lies beyond what a Date can hold (ts-mls's default notAfter is 2^63 − 1 s). */
  notBefore?: Date;
  notAfter?: Date;
  /** The leaf's basic credential identity as UTF-8; left out for other credential types and for bytes that are not UTF-8. */
  identity?: string;
  /** The leaf's signature public key: the key a group leaf made from this package carries. */
  signatureKey: Uint8Array;
  /** Whether the package and its leaf node are signed with that key (RFC 9420 §10.1), checked when called. */
  verifySignatures(): Promise<boolean>;
}

/** Seconds after which `new Date(seconds * 1000)` is Invalid Date (ECMAScript's limit is 8.64e15 ms). */
const MAX_DATE_SECONDS = 8_640_000_000_000n;

/**
 * Reads the clear-text fields of a KeyPackage (RFC 9420 §10), framed as an MLSMessage with wire format
 * mls_key_package or bare. Undefined for anything else, including trailing bytes; never throws. Signatures are
 * checked only by `verifySignatures`.
 *
 * @example
 * readKeyPackage(bytes)?.cipherSuite // "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
 */
export function readKeyPackage(bytes: Uint8Array): KeyPackageInfo | undefined {
  const keyPackage = framedKeyPackage(bytes) ?? decodeExactly(decodeKeyPackage, bytes);
  if (!keyPackage || keyPackage.leafNode.leafNodeSource !== "key_package") return undefined;
  const { lifetime, credential } = keyPackage.leafNode;
  const { notBefore, notAfter } = lifetime;
  const identity = credential.credentialType === "basic" ? utf8(credential.identity) : undefined;
  return {
    cipherSuite: cipherSuiteName(keyPackage.cipherSuite),
    signatureKey: keyPackage.leafNode.signaturePublicKey,
    verifySignatures: () =>
      verifiesWith(
        keyPackage.cipherSuite,
        async (signature) =>
          (await verifyKeyPackage(keyPackage, signature)) &&
          (await verifyLeafNodeSignatureKeyPackage(keyPackage.leafNode, signature)),
      ),
    ...(identity !== undefined && { identity }),
    ...(notBefore <= MAX_DATE_SECONDS && { notBefore: new Date(Number(notBefore) * 1000) }),
    ...(notAfter <= MAX_DATE_SECONDS && { notAfter: new Date(Number(notAfter) * 1000) }),
  };
}

function framedKeyPackage(bytes: Uint8Array): KeyPackage | undefined {
  const message = decodeExactly(decodeMlsMessage, bytes);
  return message?.wireformat === "mls_key_package" ? message.keyPackage : undefined;
}

/** ts-mls names the suites it knows and gives any other id as a decimal string. */
export function cipherSuiteName(name: CiphersuiteName): string {
  const id = ciphersuites[name] ?? Number(name);
  return RFC9420_CIPHER_SUITES[id - 1] ?? `0x${id.toString(16).padStart(4, "0")}`;
}
