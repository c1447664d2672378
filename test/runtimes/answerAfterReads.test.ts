/** The Node entry's fetch wrapper: the same answer, handed back only in the event loop's check phase. */
import { describe, expect, it } from "vitest";
import { answerAfterReads } from "../../src/entry/answerAfterReads.js";

describe("answerAfterReads", () => {
  it("hands back the handler's answer after the immediates queued while it ran, for sync and async handlers", async () => {
    for (const sync of [true, false]) {
      let immediateRan = false;
      const answer = new Response("ok");
      const wrapped = answerAfterReads(async () => {
        if (!sync) await Promise.resolve();
        setImmediate(() => (immediateRan = true));
        return answer;
      });
      const env = { incoming: {}, outgoing: {} };
      expect(await wrapped(new Request("http://localhost/health"), env)).toBe(answer);
      expect(immediateRan).toBe(true);
    }
  });

  it("passes the request and the Node bindings through, and a failure too", async () => {
    const request = new Request("http://localhost/x");
    const env = { incoming: {}, outgoing: {} };
    const seen: unknown[] = [];
    await answerAfterReads((r, e) => (seen.push(r, e), new Response(null, { status: 204 })))(request, env);
    expect(seen).toEqual([request, env]);
    await expect(answerAfterReads(() => Promise.reject(new Error("handler failed")))(request, env)).rejects.toThrow(
      "handler failed",
    );
  });
});
