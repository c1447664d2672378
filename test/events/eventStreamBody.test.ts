/** An event stream's response body on its own: chunks go out one per pull, in order, and never to a client that left. */
import { describe, expect, it } from "vitest";
import { EventStreamBody } from "../../src/events/eventStreamBody.js";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (chunk: Uint8Array | undefined) => (chunk ? new TextDecoder().decode(chunk) : undefined);
const settled = async (promise: Promise<unknown>) =>
  Promise.race([promise.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 20))]);

describe("EventStreamBody", () => {
  it("offers a chunk only to a consumer asking for one; a write waits for the ask, and writes keep their order", async () => {
    const body = new EventStreamBody();
    const reader = body.readable.getReader();
    expect(body.offer(bytes("nobody asked"))).toBe(false);

    const first = reader.read();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(body.offer(bytes("one"))).toBe(true);
    expect(text((await first).value)).toBe("one");

    const two = body.write(bytes("two"));
    const three = body.write(bytes("three"));
    expect(await settled(two)).toBe(false);
    // A write is queued: an offer would overtake it.
    expect(body.offer(bytes("overtaking"))).toBe(false);
    expect(text((await reader.read()).value)).toBe("two");
    expect(await settled(two)).toBe(true);
    expect(text((await reader.read()).value)).toBe("three");
    await three;

    const closed = body.close();
    expect(await reader.read()).toEqual({ done: true, value: undefined });
    await closed;
  });

  it("ends after the writes before close(), and a client that goes away releases a pending write and is told once", async () => {
    const body = new EventStreamBody();
    const reader = body.readable.getReader();
    void body.write(bytes("last"));
    void body.close();
    expect(text((await reader.read()).value)).toBe("last");
    expect((await reader.read()).done).toBe(true);

    const gone = new EventStreamBody();
    const goneReader = gone.readable.getReader();
    let told = 0;
    gone.onAbort(() => told++);
    const pending = gone.write(bytes("never taken"));
    await goneReader.cancel();
    expect(await settled(pending)).toBe(true);
    expect(gone.aborted).toBe(true);
    expect(gone.offer(bytes("after"))).toBe(false);
    await gone.write(bytes("after"));
    gone.abort();
    expect(told).toBe(1);
  });
});
