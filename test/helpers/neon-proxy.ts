import { connect, type Socket } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

export interface NeonProxy {
  port: number;
  /** `neonConfig.wsProxy` value that routes Neon's WebSocket through this proxy. */
  wsProxy: (host: string, port: number | string) => string;
  close(): Promise<void>;
}

/**
 * The WebSocket→TCP bridge Neon runs in front of its Postgres, in miniature, so Neon's driver can
 * speak to a local server: `ws://127.0.0.1:PORT/v1?address=host:port`, bytes piped both ways.
 */
export async function startNeonProxy(): Promise<NeonProxy> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/v1" });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const sockets = new Set<Socket>();

  server.on("connection", (client: WebSocket, request) => {
    const address = new URL(request.url ?? "", "http://proxy").searchParams.get("address") ?? "";
    const separator = address.lastIndexOf(":");
    const socket = connect(Number(address.slice(separator + 1)), address.slice(0, separator));
    sockets.add(socket);
    socket.on("data", (chunk) => client.send(chunk));
    socket.on("close", () => {
      sockets.delete(socket);
      client.close();
    });
    socket.on("error", () => client.terminate());
    client.on("message", (data) => socket.write(data as Buffer));
    client.on("close", () => socket.end());
    client.on("error", () => socket.destroy());
  });

  const { port } = server.address() as { port: number };
  return {
    port,
    wsProxy: (host, targetPort) => `127.0.0.1:${port}/v1?address=${host}:${targetPort}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
}
