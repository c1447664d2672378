/**
 * A TCP proxy in front of PostgreSQL that can fail the way networks do: `blackhole()` makes every
 * connection open at that moment stop carrying bytes in either direction while its sockets stay open
 * (a database failover, a NAT that dropped its state, a stuck pooler); connections made afterwards
 * work normally.
 */
import { createServer, connect, type Socket } from "node:net";
import { once } from "node:events";

export interface TcpProxy {
  port: number;
  /** `databaseUrl` with its host and port replaced by the proxy's. */
  url(databaseUrl: string): string;
  /** Blackholes every open connection; returns how many. */
  blackhole(): number;
  /** Connections currently forwarding bytes. */
  live(): number;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  blackholed: boolean;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    const pair: Pair = { client, upstream, blackholed: false };
    pairs.add(pair);
    const forward = (from: Socket, to: Socket) => {
      from.on("data", (chunk) => {
        if (!pair.blackholed) to.write(chunk);
      });
      // A blackholed connection never tells either side that the other one left.
      from.on("close", () => {
        if (pair.blackholed) return;
        pairs.delete(pair);
        to.destroy();
      });
      from.on("error", () => {});
    };
    forward(client, upstream);
    forward(upstream, client);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;

  return {
    port,
    url(databaseUrl) {
      const url = new URL(databaseUrl);
      url.hostname = "127.0.0.1";
      url.port = String(port);
      return url.toString();
    },
    blackhole() {
      let count = 0;
      for (const pair of pairs) {
        if (pair.blackholed) continue;
        pair.blackholed = true;
        count++;
      }
      return count;
    },
    live: () => [...pairs].filter((pair) => !pair.blackholed).length,
    async close() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      await closed;
    },
  };
}
