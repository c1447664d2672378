/**
 * An event stream asked for over HTTP/1.0 (curl -0, some proxies): HTTP/1.0 has no chunked transfer coding, and a
 * server must not send `Transfer-Encoding` to such a client (RFC 9112 6.1). The stream's body is then delimited by the
 * connection's close, and its first bytes are the opening comment itself, not a chunk size line.
 */
import { serve } from "@hono/node-server";
import type { Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { randomGroupId, testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { clientFor } from "../helpers/client.js";
import { SUITE } from "./convo.js";
import { streamPath } from "./sseClient.js";

const db = testDatabase();
afterAll(() => db.close());

/** What the server sent on a raw connection for `request`, once `enough` says so (or the connection ended). */
function exchange(port: number, request: string, enough: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    let text = "";
    const done = () => {
      socket.destroy();
      resolve(text);
    };
    socket.on("data", (chunk) => {
      text += chunk.toString("latin1");
      if (enough(text)) done();
    });
    socket.on("end", done);
    socket.on("error", reject);
    setTimeout(done, 3000);
  });
}

describe("an event stream over HTTP/1.0", () => {
  it("goes out without chunked framing", async () => {
    const { app } = testApp(db, { EVENTS_KEEPALIVE_MS: "600000" });
    const server = await new Promise<Server>((resolve) => {
      const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(started as Server));
    });
    try {
      const alice = unique("did:plc:alice");
      const created = await clientFor(app, alice).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
      expect(created.status).toBe(200);
      const { port } = server.address() as AddressInfo;
      const request =
        `GET ${streamPath({ convoId: created.data.id })} HTTP/1.0\r\n` +
        `Host: 127.0.0.1:${port}\r\nAuthorization: Bearer ${await tokenFor(alice)}\r\n\r\n`;
      const text = await exchange(port, request, (sent) => sent.includes(": open"));
      const [head, body = ""] = text.split("\r\n\r\n");
      expect(head).toMatch(/^HTTP\/1\.[01] 200/);
      expect(head).not.toMatch(/transfer-encoding/i);
      expect(body, JSON.stringify(body)).toMatch(/^: open\nid: \d+\n\n/);

      // HTTP/1.1 keeps its chunked head, written at once (no read-ahead to size the body).
      const http11 = await exchange(port, request.replace(" HTTP/1.0\r\n", " HTTP/1.1\r\n"), (sent) =>
        sent.includes(": open"),
      );
      expect(http11.split("\r\n\r\n")[0]).toMatch(/transfer-encoding: chunked/i);
    } finally {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    }
  });
});
