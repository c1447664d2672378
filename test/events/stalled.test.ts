/**
 * Event streams against clients that do not read, on real server processes (src/entry/node.ts) over
 * raw sockets: HEAD starts no stream, a client that stops reading loses its connection, and a server
 * with such clients still shuts down cleanly on SIGTERM.
 */
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { describe, expect, it, vi } from "vitest";
import { tokenFor } from "../helpers/context.js";
import { clientOn, conversation, SERVER_SECRET, startServer, type Server } from "./servers.js";
import { openStream, streamPath } from "./sseClient.js";

/** Enough to fill any socket buffers between a server and a client that does not read (a few MB here). */
const MESSAGES = 24;
const CIPHERTEXT_BYTES = 700 * 1024;
const QUIET = { EVENTS_KEEPALIVE_MS: "600000", EVENTS_MAX_BACKLOG: "100000" };

async function sendBig(server: Server, did: string, convoId: string): Promise<void> {
  for (let i = 0; i < MESSAGES; i++) {
    const ciphertext = new Uint8Array(CIPHERTEXT_BYTES).fill(i);
    const reply = await clientOn(server, did).sendMessage({ convoId, ciphertext, epoch: 0 });
    expect(reply.status).toBe(200);
  }
}

/** A stream over a raw socket that reads the response head and then nothing more. */
async function stalledStream(server: Server, did: string, convoId: string): Promise<Socket> {
  const socket = connect(server.port, "127.0.0.1");
  await once(socket, "connect");
  const token = await tokenFor(did, { secret: SERVER_SECRET });
  socket.write(`GET ${streamPath({ convoId })} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  const [head] = (await once(socket, "data")) as [Buffer];
  expect(head.toString()).toMatch(/^HTTP\/1\.1 200/);
  socket.pause();
  return socket;
}

/** The server's side of a client's connection while it is ESTABLISHED: its Send-Q in bytes, else undefined. */
function serverSendQueue(server: Server, client: Socket): number | undefined {
  const filter = `( sport = :${server.port} and dport = :${client.localPort} )`;
  const line = execFileSync("ss", ["-tnH", "state", "established", filter]).toString().trim();
  return line ? Number(line.split(/\s+/)[1]) : undefined;
}

async function metric(server: Server, line: RegExp): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const found = text.split("\n").find((row) => line.test(row));
  return found === undefined ? 0 : Number(found.split(" ").at(-1));
}

describe("event streams and clients that do not read", { timeout: 120_000 }, () => {
  it("refuses HEAD with 405 and leaves no stream running", async () => {
    const server = await startServer();
    try {
      const { bob, convoId } = await conversation(server);
      const token = await tokenFor(bob, { secret: SERVER_SECRET });
      for (let i = 0; i < 3; i++) {
        const answer = request(`${server.url}${streamPath({ convoId })}`, {
          method: "HEAD",
          headers: { Authorization: `Bearer ${token}` },
        }).end();
        const [response] = await once(answer, "response");
        expect(response.statusCode).toBe(405);
        expect(response.headers.allow).toBe("GET");
        response.resume();
      }
      expect(await metric(server, /^event_streams_open /)).toBe(0);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it("cuts the connection of a client that stops taking writes, and counts it as a slow consumer", async () => {
    const server = await startServer({ ...QUIET, EVENTS_WRITE_TIMEOUT_MS: "300" });
    try {
      const { alice, bob, convoId } = await conversation(server);
      const socket = await stalledStream(server, bob, convoId);
      const closed = once(socket, "close");
      await sendBig(server, alice, convoId);

      // The server's socket is gone (reset, its buffers dropped), not kept ESTABLISHED behind the stuck write.
      await vi.waitFor(() => expect(serverSendQueue(server, socket)).toBeUndefined(), {
        timeout: 20_000,
        interval: 100,
      });
      expect(await metric(server, /^event_streams_open /)).toBe(0);
      expect(await metric(server, /^event_streams_ended_total\{reason="slow_consumer"\}/)).toBe(1);
      socket.on("error", () => {}).resume();
      await closed;
    } finally {
      await server.stop();
    }
  });

  it("shuts down on SIGTERM with stalled streams: their sockets are cut, the database closed, exit code 0", async () => {
    // The write timeout is far away: only shutdown can end these streams.
    const server = await startServer({ ...QUIET, EVENTS_WRITE_TIMEOUT_MS: "600000", LOG_LEVEL: "info" });
    let stopped: Promise<number | null> | undefined;
    try {
      const { alice, bob, convoId } = await conversation(server);
      const stalled = [await stalledStream(server, bob, convoId), await stalledStream(server, alice, convoId)];
      for (const socket of stalled) socket.on("error", () => {});
      const healthy = await openStream(server.url, bob, { convoId }, SERVER_SECRET);
      const delivered = healthy.events!.take(MESSAGES);
      await sendBig(server, alice, convoId);
      // Both are stuck: bytes wait in the server's send queue that the client never takes.
      await vi.waitFor(
        () => {
          for (const socket of stalled) expect(serverSendQueue(server, socket)).toBeGreaterThan(0);
        },
        { timeout: 20_000, interval: 100 },
      );

      // The healthy stream got every message (stalled neighbours hold nobody up); shutdown then ends it cleanly.
      expect((await delivered).length).toBe(MESSAGES);
      const rest = healthy.events!.take(Number.MAX_SAFE_INTEGER);
      stopped = server.stop();
      expect(await stopped).toBe(0);
      expect(server.output()).toMatch(/"message":"stopped"/);
      expect(await rest).toEqual([]);
    } finally {
      await (stopped ?? server.stop());
    }
  });
});
