/**
 * A tiny DID resolver on loopback for the auth tests: a PLC directory answering `GET /<did>` and a
 * did:web host answering `GET /.well-known/did.json` (its DID is `did:web:127.0.0.1%3A<port>`).
 * Documents can be swapped at any time (key rotation); `fetches` counts requests per path.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** A reply served as-is instead of a JSON document. */
export interface RawReply {
  status: number;
  body: string;
  contentType?: string;
}

export class DidServer {
  /** PLC directory documents by DID. */
  readonly plc = new Map<string, unknown>();
  /** Raw replies by path, for broken directories and hosts. */
  readonly raw = new Map<string, RawReply>();
  /** The did:web host's document. */
  web: unknown;
  readonly fetches = new Map<string, number>();
  /** While set, every request waits for it before being answered (resolutions held in flight). */
  gate: Promise<void> | undefined;
  private server: Server | undefined;

  async start(): Promise<this> {
    this.server = createServer(async (req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      this.fetches.set(path, (this.fetches.get(path) ?? 0) + 1);
      await this.gate;
      const raw = this.raw.get(path);
      const doc = path === "/.well-known/did.json" ? this.web : this.plc.get(path.slice(1));
      if (raw) {
        res.writeHead(raw.status, { "Content-Type": raw.contentType ?? "application/json" }).end(raw.body);
      } else if (doc === undefined) {
        res
          .writeHead(404, { "Content-Type": "application/json" })
          .end(JSON.stringify({ message: "DID not registered" }));
      } else {
        res.writeHead(200, { "Content-Type": "application/did+ld+json" }).end(JSON.stringify(doc));
      }
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return this;
  }

  get port(): number {
    return (this.server!.address() as AddressInfo).port;
  }

  /** Base URL, for PLC_DIRECTORY_URL. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The DID this server hosts as a did:web host. */
  get webDid(): string {
    return `did:web:127.0.0.1%3A${this.port}`;
  }

  fetchesOf(did: string): number {
    return this.fetches.get(did.startsWith("did:web:") ? "/.well-known/did.json" : `/${did}`) ?? 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
