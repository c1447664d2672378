/** XrpcError: an answer to the client, cheap to make (no stack trace), and no effect on other errors' traces. */
import { describe, expect, it } from "vitest";
import { authRequired, XrpcError } from "../../src/errors.js";

describe("XrpcError", () => {
  it("captures no stack frames, and leaves Error.stackTraceLimit as it found it", () => {
    const before = Error.stackTraceLimit;
    const error = authRequired("an Authorization: Bearer token is required");
    expect(error).toBeInstanceOf(XrpcError);
    expect(error).toMatchObject({ status: 401, error: "AuthenticationRequired", name: "XrpcError" });
    expect(error.stack ?? "").not.toMatch(/\n\s+at /);
    expect(Error.stackTraceLimit).toBe(before);
    // A fault still has its trace.
    expect(new Error("fault").stack).toMatch(/\n\s+at /);
  });
});
