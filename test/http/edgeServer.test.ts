/**
 * The HTTP edge of a real Node server process, driven over raw sockets: bodies are read only after
 * the route and token were checked, and then within a byte cap and a time limit; slow headers and
 * too many connections are cut off by the server; /metrics is served on its own port.
 */
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { tokenFor, TEST_SECRET } from "../helpers/context.js";
import { startServer, type RunningServer } from "../runtimes/server.js";
import { freePort } from "../setup/postgres.js";

const SEND = "/xrpc/blue.catbird.mls.sendMessage";
const BODY_READ_TIMEOUT_MS = 1000;
const MAX_CONNECTIONS = 8;

let server: RunningServer;
let port: number;
let metricsPort: number;

beforeAll(async () => {
  port = await freePort();
  metricsPort = await freePort();
  server = await startServer({
    command: process.execPath,
    args: ["--import", "tsx", "src/entry/node.ts"],
    port,
    env: {
      DATABASE_URL: inject("databaseUrl"),
      PORT: String(port),
      HOST: "127.0.0.1",
      DEV_JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: "info",
      CLEANUP_INTERVAL_SECONDS: "0",
      MIGRATE_ON_START: "false",
      BODY_LIMIT_BYTES: "4096",
      BODY_READ_TIMEOUT_MS: String(BODY_READ_TIMEOUT_MS),
      SERVER_HEADERS_TIMEOUT_MS: "1000",
      SERVER_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      METRICS_PORT: String(metricsPort),
    },
  });
});
afterAll(() => server?.stop());

interface RawExchange {
  socket: Socket;
  /** Resolves with everything received once the server has sent a whole response head (or closed). */
  head: Promise<string>;
  /** Resolves once the server closed the connection. */
  closed: Promise<string>;
}

/** Opens a socket and sends `head`; whatever comes back is collected. */
function open(head: string): RawExchange {
  const socket = connect(port, "127.0.0.1");
  socket.write(head);
  let received = "";
  let gotHead: (text: string) => void;
  const headPromise = new Promise<string>((resolve) => (gotHead = resolve));
  const closed = new Promise<string>((resolve) => {
    socket.on("close", () => {
      gotHead(received);
      resolve(received);
    });
  });
  socket.on("data", (chunk) => {
    received += chunk.toString();
    if (received.includes("\r\n\r\n")) gotHead(received);
  });
  socket.on("error", () => {});
  return { socket, head: headPromise, closed };
}

/** Writes one chunk of a chunked body every `everyMs` until the socket closes. */
function trickle(socket: Socket, everyMs = 100): () => void {
  const timer = setInterval(() => {
    if (!socket.destroyed && socket.writable) socket.write("1\r\n \r\n");
  }, everyMs);
  socket.on("close", () => clearInterval(timer));
  return () => clearInterval(timer);
}

function chunkedPost(path: string, headers: Record<string, string> = {}): string {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n${lines.join("")}\r\n`;
}

const statusOf = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe("request bodies on a real Node server", () => {
  it("answers a trickled chunked POST without a token 401 without reading its body, and closes the connection", async () => {
    const exchange = open(`${chunkedPost(SEND)}1\r\n{\r\n`);
    trickle(exchange.socket);
    const head = await exchange.head;
    expect(statusOf(head)).toBe(401);
    expect(head).toMatch(/\r\nconnection: close\r\n/i);
    await exchange.closed;
  });

  it("cuts off a trickled body from a caller with a valid token with 408 RequestTimeout after BODY_READ_TIMEOUT_MS", async () => {
    const token = await tokenFor("did:plc:edgetrickle");
    const exchange = open(`${chunkedPost(SEND, { Authorization: `Bearer ${token}` })}1\r\n{\r\n`);
    trickle(exchange.socket);
    const received = await exchange.closed;
    expect(statusOf(received)).toBe(408);
    expect(received).toMatch(/\r\nconnection: close\r\n/i);
    expect(received).toContain('"error":"RequestTimeout"');
  });

  it("cuts off a trickled body with a declared Content-Length the same way", async () => {
    const token = await tokenFor("did:plc:edgetrickledeclared");
    const head = `POST ${SEND} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nAuthorization: Bearer ${token}\r\n\r\n{`;
    const exchange = open(head);
    const timer = setInterval(() => exchange.socket.writable && exchange.socket.write(" "), 100);
    const received = await exchange.closed;
    clearInterval(timer);
    expect(statusOf(received)).toBe(408);
    expect(received).toContain('"error":"RequestTimeout"');
  });

  it("answers 413 PayloadTooLarge once a chunked body from a valid caller passes BODY_LIMIT_BYTES", async () => {
    const token = await tokenFor("did:plc:edgebig");
    const exchange = open(chunkedPost(SEND, { Authorization: `Bearer ${token}` }));
    const chunk = "x".repeat(1000);
    for (let i = 0; i < 5; i++) exchange.socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    const received = await exchange.closed;
    expect(statusOf(received)).toBe(413);
    expect(received).toContain('"error":"PayloadTooLarge"');
  });

  it("closes a connection whose headers trickle in past SERVER_HEADERS_TIMEOUT_MS", async () => {
    const exchange = open("GET /health HTTP/1.1\r\n");
    const timer = setInterval(() => exchange.socket.writable && exchange.socket.write("X-Slow: 1\r\n"), 100);
    const received = await exchange.closed;
    clearInterval(timer);
    expect(received === "" || statusOf(received) === 408).toBe(true);
  });
});

describe("connections on a real Node server", () => {
  it("refuses connections past SERVER_MAX_CONNECTIONS, and takes new ones once some closed", async () => {
    const held: RawExchange[] = [];
    const statuses: number[] = [];
    for (let i = 0; i <= MAX_CONNECTIONS; i++) {
      const exchange = open("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
      statuses.push(statusOf(await exchange.head));
      held.push(exchange);
    }
    // Other connections (the test's own fetch pool) may hold some of the places: at least the last is refused.
    expect(statuses.at(-1)).toBe(0);
    expect(statuses.filter((status) => status === 200).length).toBeLessThanOrEqual(MAX_CONNECTIONS);

    for (const exchange of held) exchange.socket.destroy();
    // The server counts the closed connections out once it has seen them close.
    let answered = 0;
    for (let attempt = 0; attempt < 50 && answered !== 200; attempt++) {
      const retry = open("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
      answered = statusOf(await retry.head);
      retry.socket.destroy();
    }
    expect(answered).toBe(200);
  });
});

describe("metrics and start-up on a real Node server", () => {
  it("serves /metrics on METRICS_PORT and not on the API listener", async () => {
    expect((await fetch(`${server.baseUrl}/metrics`)).status).toBe(404);
    const scraped = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain("http_requests_total");
    expect((await fetch(`http://127.0.0.1:${metricsPort}/health`)).status).toBe(404);
  });

  it("says in its listening line which driver and auth mode run", () => {
    const line = server
      .output()
      .split("\n")
      .find((text) => text.includes('"message":"listening"'));
    expect(JSON.parse(line!)).toMatchObject({ driver: "postgres", auth: "development tokens (HS256)" });
  });
});
