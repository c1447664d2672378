/**
 * The deadline and the caller's signal reach everything a call waits for: a response body that stalls (even after
 * the Request that fetch linked our signal to weakly was collected), an event stream's connect, a quiet stream
 * (reconnected once idle), a token supplier that never answers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "mls-delivery-service/client";
import { collector } from "../helpers/gc.js";
import { within } from "../helpers/within.js";
import { fakeServer } from "./fakeServer.js";

const gc = collector();
let cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups) await cleanup();
  cleanups = [];
});

/** Collects garbage every 20 ms until the test ends. */
function collecting() {
  const timer = setInterval(gc, 20);
  cleanups.push(() => clearInterval(timer));
}

async function server(handler: Parameters<typeof fakeServer>[0]) {
  const fake = await fakeServer(handler);
  cleanups.push(fake.close);
  return fake;
}

const stalledJson = () =>
  server((_, response) => {
    response.writeHead(200, { "Content-Type": "application/json" });
    response.write('{"conversations":[');
  });

describe("aborting reaches the response body, even after a GC", () => {
  it("the deadline ends a call whose body stalls", async () => {
    const { url } = await stalledJson();
    collecting();
    const client = createClient({ service: url, retry: { deadlineMs: 500 } });
    const outcome = client.getConvos({}).catch((error: unknown) => error);
    expect(await within(outcome, 4_000)).toMatchObject({ name: "TimeoutError" });
  });

  it("the caller's abort ends a call whose body stalls", async () => {
    const { url } = await stalledJson();
    collecting();
    const client = createClient({ service: url, retry: { deadlineMs: 60_000 } });
    const stop = new AbortController();
    const outcome = client.getConvos({}, { signal: stop.signal }).catch((error: unknown) => error);
    setTimeout(() => stop.abort(new Error("the user left")), 300);
    expect(await within(outcome, 4_000)).toMatchObject({ message: "the user left" });
  });

  it("the caller's abort ends a subscription on a quiet stream", async () => {
    const { url } = await server((_, response) => {
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      response.write(": open\nid: 3\n\n");
    });
    collecting();
    const stop = new AbortController();
    const client = createClient({ service: url });
    const following = (async () => {
      for await (const _ of client.streamConvoEvents({ convoId: "c1" }, stop.signal));
      return "ended";
    })();
    setTimeout(() => stop.abort(), 300);
    expect(await within(following, 4_000)).toBe("ended");
  });
});

describe("the deadline bounds what a call waits for", () => {
  it("a stream's connect to a server that never answers", async () => {
    const { url } = await server(() => {});
    const client = createClient({ service: url, retry: { deadlineMs: 300 } });
    const outcome = client
      .streamConvoEvents({ convoId: "c1", cursor: 0 })
      .next()
      .catch((error: unknown) => error);
    expect(await within(outcome, 4_000)).toMatchObject({ name: "TimeoutError" });
  });

  it("a token supplier that never answers", async () => {
    const client = createClient({
      service: "http://mls.invalid",
      token: () => new Promise<string>(() => {}),
      fetch: () => Response.json({ conversations: [] }),
      retry: { deadlineMs: 300 },
    });
    expect(
      await within(
        client.getConvos({}).catch((error: unknown) => error),
        4_000,
      ),
    ).toMatchObject({
      name: "TimeoutError",
    });
  });
});

describe("an idle event stream", () => {
  it("is reconnected once nothing (not even a keep-alive) came for streamIdleMs", async () => {
    const fake = await server((_, response) => {
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      response.write(": open\nid: 3\n\n");
    });
    const stop = new AbortController();
    const client = createClient({ service: fake.url, streamIdleMs: 200, retry: { baseDelayMs: 10 } });
    const following = (async () => {
      for await (const _ of client.streamConvoEvents({ convoId: "c1" }, stop.signal));
    })();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    stop.abort();
    await following;
    expect(fake.requests).toBeGreaterThanOrEqual(3);
  });

  it("is kept while keep-alives come", async () => {
    const fake = await server((_, response) => {
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      response.write(": open\nid: 3\n\n");
      const timer = setInterval(() => response.write(": keep-alive\n\n"), 50);
      response.on("close", () => clearInterval(timer));
    });
    const stop = new AbortController();
    const client = createClient({ service: fake.url, streamIdleMs: 200 });
    const following = (async () => {
      for await (const _ of client.streamConvoEvents({ convoId: "c1" }, stop.signal));
    })();
    await new Promise((resolve) => setTimeout(resolve, 800));
    stop.abort();
    await following;
    expect(fake.requests).toBe(1);
  });
});
