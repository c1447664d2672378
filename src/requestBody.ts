import type { Context } from "hono";
import { invalidRequest, XrpcError } from "./errors.js";

/** Far deeper than any real request body; JSON nested deeper is refused before it is parsed. */
export const MAX_JSON_DEPTH = 64;

export interface BodyLimits {
  maxBytes: number;
  /** How long the whole body may take to arrive, from the moment it is first read. */
  timeoutMs: number;
}

/**
 * The request body as JSON: checked for nesting depth in one linear pass before `JSON.parse` (a body
 * nested a million levels deep costs parse time and recursion in every later walk), refused (400) when
 * it is not JSON or nests deeper than `MAX_JSON_DEPTH`.
 */
export function parseJsonBody(text: string): unknown {
  if (nestingExceeds(text, MAX_JSON_DEPTH)) {
    throw invalidRequest(`request body is nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw invalidRequest("request body must be JSON");
  }
}

/** True when arrays and objects in `text` nest deeper than `max`. Strings are skipped; invalid JSON is left to the parser. */
export function nestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === 0x5c)
        i++; // backslash: skip the escaped character
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x5b || code === 0x7b) {
      if (++depth > max) return true;
    } else if (code === 0x5d || code === 0x7d) depth--;
  }
  return false;
}

const CLOSE = { Connection: "close" };

export const bodyTooLarge = (maxBytes: number) =>
  new XrpcError(413, "PayloadTooLarge", `request body exceeds ${maxBytes} bytes`, CLOSE);
const bodyTimedOut = (timeoutMs: number) =>
  new XrpcError(408, "RequestTimeout", `request body did not arrive within ${timeoutMs} ms`, CLOSE);

/**
 * The request body's text, within `limits`. Only handlers and the middleware after `authenticate` read
 * it, so a client without a valid token never gets its body read. A body that is cut off answers with
 * `Connection: close`: the rest of it is never read.
 *
 * A body with a declared Content-Length (already checked against the limit by `limitBody`; the HTTP
 * parser stops at it) is read whole, which on Node takes @hono/node-server's fast path. A streamed
 * body is counted chunk by chunk and cut off at the limit.
 */
export async function readBodyText(c: Context, { maxBytes, timeoutMs }: BodyLimits): Promise<string> {
  // Only a length `limitBody` could check (decimal digits) is trusted; anything else is counted as it arrives.
  const length = c.req.header("Content-Length");
  const declared = length !== undefined && /^\d+$/.test(length) && c.req.header("Transfer-Encoding") === undefined;
  const stream = declared ? undefined : c.req.raw.body;
  const reader = stream?.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void reader?.cancel().catch(() => {});
      reject(bodyTimedOut(timeoutMs));
    }, timeoutMs);
  });
  try {
    return await Promise.race([reader ? readCounted(reader, maxBytes) : c.req.text(), expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function readCounted(reader: ReadableStreamDefaultReader<Uint8Array>, maxBytes: number): Promise<string> {
  const decoder = new TextDecoder();
  let size = 0;
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    size += value.byteLength;
    if (size > maxBytes) {
      void reader.cancel().catch(() => {});
      throw bodyTooLarge(maxBytes);
    }
    text += decoder.decode(value, { stream: true });
  }
}
