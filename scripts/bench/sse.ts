import { get, type ClientRequest } from "node:http";

/** An open Server-Sent Events response. */
export interface SseStream {
  /** Drops the connection; resolves once its socket is closed. */
  close(): Promise<void>;
}

/** An SSE event as it arrived, with `performance.now()` of the chunk that completed it. */
export interface SseEvent {
  event: string;
  data: string;
  at: number;
}

/**
 * Opens `url` as an SSE stream on its own connection (node:http: no pool, no reconnect) and calls
 * `onEvent` for every event; resolves once the response head is in (the server sends it with the
 * stream's first write), rejects on any status but 200.
 */
export function openSse(
  url: string,
  headers: Record<string, string>,
  onEvent: (event: SseEvent) => void,
): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req: ClientRequest = get(url, { headers: { ...headers, Accept: "text/event-stream" }, agent: false });
    const closed = new Promise<void>((done) => req.once("close", done));
    const close = () => {
      req.destroy();
      return closed;
    };
    req.once("error", reject);
    req.once("response", (res) => {
      res.setEncoding("utf8");
      if (res.statusCode !== 200) {
        let body = "";
        res.on("data", (chunk: string) => (body += chunk));
        res.once("end", () => reject(new Error(`stream answered ${res.statusCode}: ${body}`)));
        return;
      }
      let buffered = "";
      res.on("data", (chunk: string) => {
        const at = performance.now();
        buffered += chunk;
        let end: number;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const event = parseBlock(block, at);
          if (event) onEvent(event);
        }
      });
      // After the head, a failure is the connection ending: close() handles it.
      req.off("error", reject);
      req.on("error", () => {});
      resolve({ close });
    });
  });
}

/** One event block's `event:` and `data:` lines; undefined for a comment (keep-alive, open). */
function parseBlock(block: string, at: number): SseEvent | undefined {
  let event = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event, data: data.join("\n"), at } : undefined;
}
