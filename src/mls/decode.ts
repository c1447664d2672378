import type { Decoder } from "ts-mls";

/**
 * Runs a ts-mls TLS decoder over the whole input. On malformed input ts-mls decoders return `undefined`, throw
 * a CodecError (a length past the end of the buffer) or a TypeError (some unknown enum values); all become
 * `undefined` here, as does a value followed by trailing bytes: the input must be exactly one encoded value.
 */
export function decodeExactly<T>(decoder: Decoder<T>, bytes: Uint8Array): T | undefined {
  try {
    const decoded = decoder(bytes, 0);
    if (decoded === undefined || decoded[1] !== bytes.length) return undefined;
    return decoded[0];
  } catch {
    return undefined;
  }
}

/** Bytes as strict UTF-8 (no replacement characters, a BOM kept), or undefined when they are not UTF-8. */
export function utf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** Bytes as lowercase hex, the form group ids take in the API. */
export const toHex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
