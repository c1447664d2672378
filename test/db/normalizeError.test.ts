import { describe, expect, it } from "vitest";
import { DatabaseError, DatabaseUnavailableError, normalizeError, UniqueViolationError } from "../../src/db/driver.js";

/** What a driver throws for a socket that failed: a Node system error with its code. */
const socketError = (code: string) => Object.assign(new Error(`connect ${code} 10.0.0.1:5432`), { code });

describe("normalizeError", () => {
  it.each(["ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EAI_AGAIN"])(
    "takes a socket's %s for an unreachable database (503), not a server error",
    (code) => {
      expect(normalizeError(socketError(code))).toBeInstanceOf(DatabaseUnavailableError);
    },
  );

  it("keeps a server's SQLSTATE, and a unique violation's constraint", () => {
    const refused = normalizeError(Object.assign(new Error("deadlock detected"), { code: "40P01" }));
    expect(refused).toBeInstanceOf(DatabaseError);
    expect((refused as DatabaseError).code).toBe("40P01");
    const duplicate = normalizeError(Object.assign(new Error("duplicate"), { code: "23505", constraint: "k" }));
    expect(duplicate).toBeInstanceOf(UniqueViolationError);
    expect((duplicate as UniqueViolationError).constraint).toBe("k");
  });
});
