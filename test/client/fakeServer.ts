/** A node:http server on port 0 answering with `handler`, counting requests; `close()` drops every connection. */
import http from "node:http";
import v8 from "node:v8";
import vm from "node:vm";

export async function fakeServer(handler: (request: http.IncomingMessage, response: http.ServerResponse) => void) {
  let requests = 0;
  const server = http.createServer((request, response) => {
    requests++;
    handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The garbage collector, without --expose-gc: collecting often is what drops a Request whose signal fetch links weakly. */
export function collector(): () => void {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}

/** Settles `promise`, or reports it still pending after `ms`. */
export const within = <T>(promise: Promise<T>, ms: number): Promise<T | "pending"> =>
  Promise.race([promise, new Promise<"pending">((resolve) => setTimeout(() => resolve("pending"), ms))]);
