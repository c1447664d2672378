import type { ErrorHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { DatabaseError, DatabaseUnavailableError } from "../db/driver.js";
import { invalidRequest, notReady, XrpcError } from "../errors.js";
import { jsonAnswer } from "../xrpc.js";

const RETRYABLE_SQLSTATES = new Set(["40001", "40P01", "55P03", "57014"]);
/** NUL in a text value (22021) or in a JSON string stored as jsonb (22P05): the client's text, not our fault. */
const UNSTORABLE_TEXT_SQLSTATES = new Set(["22021", "22P05"]);

/** Maps anything thrown to the XRPC error body. 5xx never carries details of the failure. */
export const onError: ErrorHandler = (error, c) => {
  const failure = toXrpcError(error);
  c.get("app")?.metrics.xrpcError(failure.error);
  if (failure.status >= 500) {
    c.get("app")?.logger.error("request failed", {
      requestId: c.get("requestId"),
      path: c.req.path,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
  }
  return jsonAnswer(
    c,
    { error: failure.error, message: failure.message },
    failure.status as ContentfulStatusCode,
    failure.headers,
  );
};

function toXrpcError(error: unknown): XrpcError {
  if (error instanceof XrpcError) return error;
  if (error instanceof DatabaseUnavailableError) return notReady();
  if (error instanceof DatabaseError && error.code && UNSTORABLE_TEXT_SQLSTATES.has(error.code)) {
    return invalidRequest("text must not contain NUL characters");
  }
  if (error instanceof DatabaseError && error.code && RETRYABLE_SQLSTATES.has(error.code)) {
    return new XrpcError(503, "NotReady", "the database is busy; retry shortly", { "Retry-After": "1" });
  }
  if (error instanceof HTTPException) {
    if (error.status === 413) return new XrpcError(413, "PayloadTooLarge", "request body is too large");
    if (error.status === 504 || error.status === 503) {
      return new XrpcError(503, "NotReady", "the request timed out; retry shortly", { "Retry-After": "1" });
    }
    if (error.status < 500) return new XrpcError(error.status as 400, "InvalidRequest", error.message || "bad request");
  }
  return new XrpcError(500, "InternalServerError", "internal server error");
}
