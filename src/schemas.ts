import { z } from "zod";
import { decodeBase64 } from "./bytes.js";

/** Field schemas shared by the methods; each method's own input schema lives in its `src/api/` file. */

/** The longest DID taken (the AT Protocol's limit). */
export const MAX_DID_LENGTH = 2048;

/** AT Protocol DID syntax: `did:<method>:<id>`. */
export const did = z
  .string()
  .max(MAX_DID_LENGTH)
  .regex(/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/, "must be a DID (did:<method>:<id>)");

/** Bytes as a standard base64 string or the AT Protocol `{"$bytes": "..."}` form. */
export const bytes = z.union([z.string(), z.object({ $bytes: z.string() }).strict()]).transform((value, ctx) => {
  const decoded = decodeBase64(typeof value === "string" ? value : value.$bytes);
  if (!decoded) {
    ctx.addIssue({ code: "custom", message: "must be standard base64" });
    return z.NEVER;
  }
  return decoded;
});

/** Bytes stored as they are, where the database refuses an empty value (welcomes). */
export const nonEmptyBytes = bytes.refine((value) => value.byteLength > 0, "must not be empty");

export const groupId = z.string().regex(/^([0-9a-f]{2}){1,64}$/, "must be lowercase hex, 1 to 64 bytes");

export const convoId = z.string().min(1).max(128);
export const cipherSuite = z.string().min(1).max(128);
/** An epoch in a JSON body: a number, never coerced (null, true, "" and "1" are wrong types). */
export const epoch = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** An epoch in a query string: decimal digits only. */
export const queryEpoch = z
  .string()
  .regex(/^\d{1,16}$/, "must be a non-negative integer")
  .transform(Number)
  .pipe(epoch);
/** The most items a list page holds. */
export const MAX_LIMIT = 100;
export const limit = z.coerce.number().int().min(1).max(MAX_LIMIT).default(50);
export const cursor = z.string().min(1).max(512);
/** The `cursor` of a previous page of a seq- or epoch-ordered list: the last seq or epoch it held. */
export const seqCursor = z.string().regex(/^\d{1,15}$/, "cursor is invalid");
export const idempotencyKey = z.string().regex(/^[\x20-\x7e]{1,255}$/, "must be 1 to 255 printable ASCII characters");
export const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "must be SHA-256 hex");
/** A registered device's id; requests that act as a device take it optionally (omitted: the DID's implicit device). */
export const deviceId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1 to 64 characters of A-Z a-z 0-9 . _ -");

/** Which key package each new member's welcome was built from. */
export const keyPackageHashes = z.array(z.object({ did, hash: sha256Hex })).max(10_000);
/**
 * The same per device, for roster-checked conversations: an entry whose deviceId is "" or left out names the
 * implicit device (getKeyPackages answers "" for it).
 */
export const deviceKeyPackageHashes = z
  .array(
    z.object({
      did,
      deviceId: z.string().regex(/^[A-Za-z0-9._-]{0,64}$/, "must be 0 to 64 characters of A-Z a-z 0-9 . _ -").optional(),
      hash: sha256Hex,
    }),
  )
  .max(10_000);
/** Members named in one call; the per-call limit (100) answers TooManyMembers, this only bounds parsing. */
export const didList = z.array(did).max(10_000);
