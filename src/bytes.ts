import * as nodeCrypto from "node:crypto";
/** Base64 for the wire format. Node, Deno and Workers (nodejs_compat) all provide Buffer; atob is the fallback. */
const NodeBuffer = (globalThis as { Buffer?: typeof import("node:buffer").Buffer }).Buffer;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict standard base64 (padding required); null when the text is not base64. */
export function decodeBase64(text: string): Uint8Array | null {
  if (!BASE64.test(text)) return null;
  if (NodeBuffer) {
    const buffer = NodeBuffer.from(text, "base64");
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

export function encodeBase64(bytes: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The AT Protocol form used in outputs. */
export const bytesOut = (bytes: Uint8Array) => ({ $bytes: encodeBase64(bytes) });

/** `crypto.hash` (Node >= 20.12): half the cost of a Hash object for a request-sized input; absent on older runtimes. */
const oneShotHash = (nodeCrypto as { hash?: (algorithm: string, data: Uint8Array | string, encoding: "hex") => string })
  .hash;

/**
 * SHA-256 as lowercase hex, synchronously: `node:crypto` (Node, Deno, Workers with nodejs_compat) hashes
 * natively; Web Crypto's digest is async and hops to a worker thread, which under load cost more than the
 * hashing itself, and a pure-JS hash cost ~10 µs per request body.
 */
export function sha256Hex(bytes: Uint8Array | string): string {
  return oneShotHash
    ? oneShotHash("sha256", bytes, "hex")
    : nodeCrypto.createHash("sha256").update(bytes).digest("hex");
}
