import type { Context, MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { sha256Hex } from "../bytes.js";
import { isTransactionConflict } from "../db/driver.js";
import { invalidRequest, XrpcError } from "../errors.js";
import {
  claimKey,
  committedAnswer,
  storeAnswer,
  type KeyClaim,
  type OnceOutcome,
  type Scope,
  type StoredAnswer,
} from "../services/idempotencyKeys.js";
import { idempotencyKey as keySchema } from "../schemas.js";
import { bodyText, jsonBody, jsonText } from "../xrpc.js";
import { canonicalJson } from "./canonicalJson.js";
import type { ReplaySource } from "../metrics.js";
import type { KnownRequests } from "./knownRequests.js";
import { requestFingerprint, sameFingerprint, type Fingerprint } from "./requestFingerprint.js";
import type { RecentAnswers } from "./recentAnswers.js";
import type { StoredAnswerReads } from "../services/storedAnswerReads.js";

export interface IdempotencyOptions {
  /** How long a stored response is replayed. */
  ttlSeconds: number;
  /** How long a repeat waits for the first request before answering 409 IdempotencyKeyInUse. */
  waitMs: number;
  /** Answers this process committed, to answer repeats of them without the database (none: always read it). */
  recent?: RecentAnswers;
  /** The requests this process committed, whose byte-for-byte repeats read their answer by key (none: not kept). */
  known?: CommittedRequests;
  /** The route's own claiming write (claim, writes and answer in one statement), tried before the general path. */
  once?: (c: Context, claim: KeyClaim) => Promise<OnceOutcome>;
}

/** The requests this process committed (`requests`), and the reads of their records (`records`). */
export interface CommittedRequests {
  requests: KnownRequests;
  records: StoredAnswerReads;
}

/** Thrown inside the transaction to roll back a 5xx answer: it must not be stored. */
class DoNotStore extends Error {}

/**
 * Exactly-once procedures. The first request with a key claims (caller, method, key) by taking its
 * lock and inserting its row, runs the handler inside the same transaction and stores the answer
 * there too, so the writes and the stored answer commit together or not at all. A concurrent repeat
 * waits on the key's lock (the database is the lock, shared by every instance) and then replays the
 * committed answer; after `waitMs` it gets 409. 5xx answers roll back and are not stored.
 *
 * A route with a `once` path first tries it: a write that claims its key itself, in the same
 * statement and commit as its writes (sendMessage's batches: many sends, claims and answers in one
 * statement). Whatever it leaves undecided takes the general path.
 *
 * A deadlock or serialization failure is contention like any other: the one rolled back may have
 * lost to the same key's other request, so it waits for the key and replays the committed answer;
 * with none committed, its 503 stands and nothing was written.
 *
 * @example
 * app.post("/xrpc/blue.catbird.mls.sendMessage", auth(...), idempotency({ ttlSeconds: 86400, waitMs: 10000 }), handler)
 */
export function idempotency({ ttlSeconds, waitMs, recent, known, once }: IdempotencyOptions): MiddlewareHandler {
  return async function idempotency(c, next) {
    const repeat = await sameBytesReplay(c, recent, known);
    if (repeat.answer) return repeat.answer;
    const key = await requestKey(c);
    c.set("idempotencyKey", key?.key);
    if (!key) return next();
    // The request's time once its body is in (a slow body must not keep an expiring key alive).
    const now = c.get("app").clock.now();

    // The request's handle (bounded by its deadline), not the pool.
    const db = c.get("db");
    const scope = scopeOf(c, key.key);
    const claim: KeyClaim = {
      scope,
      requestHash: key.hash,
      now,
      expiresAt: new Date(now.getTime() + ttlSeconds * 1000),
      waitMs,
    };
    const kept = recent?.get(scope, now);
    if (kept) return replay(c, claim, kept, "memory");
    const committed = (answer: StoredAnswer) => {
      if (!recent && !known) return;
      // sameBytesReplay's fingerprint is this one's: a header key is the request's key (else 400).
      const fingerprint = repeat.fingerprint ?? requestFingerprint(scope, key.body);
      recent?.set(scope, { ...answer, fingerprint, expiresAt: claim.expiresAt });
      known?.requests.add(fingerprint, claim.expiresAt);
    };
    if (once) {
      const outcome = await once(c, claim);
      if (outcome && "sent" in outcome) {
        committed({ requestHash: key.hash, statusCode: 200, response: outcome.sent });
        return jsonText(c, outcome.sent);
      }
      if (outcome) return replay(c, claim, outcome.stored, "database");
    }

    let stored: StoredAnswer | undefined;
    let answered: StoredAnswer | undefined;
    try {
      await db.transaction(async (tx) => {
        stored = await claimKey(tx, claim);
        if (stored) return;
        c.set("db", tx);
        await next();
        // A 429 (RejoinCooldown) means "not now": stored, the key would replay it for its whole life.
        if (c.res.status >= 500 || c.res.status === 429) throw new DoNotStore();
        answered = {
          requestHash: key.hash,
          statusCode: c.res.status,
          response: c.get("answer") ?? (await c.res.clone().text()),
        };
        // Not awaited: it goes out with COMMIT, one round trip for both.
        void storeAnswer(tx, scope, answered.statusCode, answered.response);
      });
      if (answered) committed(answered);
    } catch (error) {
      const failure = error instanceof DoNotStore ? c.error : error;
      if (isTransactionConflict(failure)) stored = await committedAnswer(db, claim);
      if (!stored && error instanceof DoNotStore) return;
      if (!stored) throw error;
    }
    if (stored) c.res = replay(c, claim, stored, "database");
  };
}

/** Answers with the committed answer of the first request, if this request is the same one (else 422). */
function replay(
  c: Context,
  { scope, requestHash }: Pick<KeyClaim, "scope" | "requestHash">,
  stored: StoredAnswer,
  from: ReplaySource,
): Response {
  if (stored.requestHash !== requestHash) {
    throw new XrpcError(422, "IdempotencyKeyReused", "this idempotency key was used with a different request");
  }
  c.get("app").metrics.idempotencyReplay(scope[1], from);
  // Written by the first request, which announced it: nothing to wake (not even what a rolled-back attempt named).
  c.set("announced", true);
  c.set("changedConvos", undefined);
  return jsonText(c, stored.response, stored.statusCode as ContentfulStatusCode, { "Idempotent-Replayed": "true" });
}

const scopeOf = (c: Context, key: string): Scope => [c.get("caller"), c.req.path.slice("/xrpc/".length), key];

/**
 * A client's retry of a request this process committed: the same key in the header and the same body,
 * byte for byte (the typed client sends a retry's body as it sent the first). Equal bytes are an equal
 * canonical body, so it is answered without parsing or canonicalizing the body: from memory while the
 * answer is kept (`recent`), else by reading its record by key (`known`). Anything else (a request this
 * process did not commit, the key in the body, other bytes) is decided by the general path.
 */
async function sameBytesReplay(
  c: Context,
  recent: RecentAnswers | undefined,
  known: CommittedRequests | undefined,
): Promise<{ answer?: Response; fingerprint?: Fingerprint }> {
  const key = c.req.header("Idempotency-Key");
  if (key === undefined || (!recent && !known)) return {};
  const body = await bodyText(c);
  // Read once the body is in: an answer whose record expired meanwhile is no longer the key's.
  const now = c.get("app").clock.now();
  const scope = scopeOf(c, key);
  const fingerprint = requestFingerprint(scope, body);
  const kept = recent?.get(scope, now);
  // Kept under this key for other bytes: the general path tells a reordered body (replay) from another one (422).
  if (kept && !sameFingerprint(kept.fingerprint, fingerprint)) return {};
  if (kept) {
    c.set("idempotencyKey", key);
    return { answer: replay(c, { scope, requestHash: kept.requestHash }, kept, "memory") };
  }
  if (!known || known.requests.empty) return { fingerprint };
  const expiresAt = known.requests.expiryOf(fingerprint, now);
  if (!expiresAt) return { fingerprint };
  // The record as this process committed it: a later record of the key (taken over once this one expired,
  // maybe while the read waited) has a later expiry, and is not this request's. A read past the request's
  // deadline, or one whose statement failed, leaves the request to the general path.
  const stored = await known.records.read(scope, expiresAt, c.get("deadlinePassed"));
  if (!stored) return { fingerprint };
  c.set("idempotencyKey", key);
  return { answer: replay(c, { scope, requestHash: stored.requestHash }, stored, "key") };
}

interface RequestKey {
  key: string;
  /** The fingerprint: SHA-256 of the canonical body without its key. */
  hash: string;
  /** The body's text (its hash is kept with a recent answer, for `sameBytesReplay`). */
  body: string;
}

/** The key from the header or the body (both present and different: 400), and the body's fingerprint. */
async function requestKey(c: Context): Promise<RequestKey | undefined> {
  const body = await jsonBody(c);
  const { idempotencyKey: bodyKey, ...rest } =
    body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const headerKey = c.req.header("Idempotency-Key");
  if (headerKey !== undefined && bodyKey !== undefined && headerKey !== bodyKey) {
    throw invalidRequest("Idempotency-Key header and idempotencyKey field differ");
  }
  const key = headerKey ?? bodyKey;
  if (key === undefined) return undefined;
  const parsed = keySchema.safeParse(key);
  if (!parsed.success) throw invalidRequest("idempotency key must be 1 to 255 printable ASCII characters");
  const fingerprinted = Array.isArray(body) || body === null || typeof body !== "object" ? body : rest;
  return { key: parsed.data, hash: sha256Hex(canonicalJson(fingerprinted)), body: await bodyText(c) };
}
