import { sha256Hex } from "../bytes.js";
import type { Scope } from "../services/idempotencyKeys.js";

/** A keyed request's fingerprint: the first 128 bits of SHA-256 over its scope and body bytes, as four 32-bit words. */
export type Fingerprint = Uint32Array;

export const FINGERPRINT_WORDS = 4;

/**
 * The fingerprint of the request with `scope` and `body`: two requests with the same one are the same request,
 * byte for byte (callers and methods hold no space, and a header key no line break, so the joined text is unique).
 */
export function requestFingerprint(scope: Scope, body: string): Fingerprint {
  const hex = sha256Hex(`${scope.join(" ")}\n${body}`);
  const words = new Uint32Array(FINGERPRINT_WORDS);
  for (let i = 0; i < FINGERPRINT_WORDS; i++) words[i] = parseInt(hex.slice(8 * i, 8 * i + 8), 16);
  return words;
}

export function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  for (let i = 0; i < FINGERPRINT_WORDS; i++) if (a[i] !== b[i]) return false;
  return true;
}
