import { didDocument, type DidDocument } from "./didDocument.js";
import { isPublicHost } from "./publicHost.js";

export interface DidResolverOptions {
  /** Base URL of the PLC directory (`https://plc.directory`). */
  plcUrl: string;
  /** How long a resolved document is served from the cache. */
  ttlMs: number;
  /** How long one resolution may take. */
  timeoutMs: number;
  /** Tests only: did:web may name private, loopback and link-local hosts, fetched over http. */
  allowPrivate: boolean;
  /** The time in milliseconds (the app's clock). */
  now: () => number;
}

export interface Resolved {
  doc: DidDocument;
  /** True when the document came from the cache rather than a fetch made for this call. */
  cached: boolean;
}

/** Thrown when a DID has no usable document; `message` says why, for the 401 the caller answers. */
export class DidResolutionError extends Error {
  override name = "DidResolutionError";
}

interface Entry {
  doc: DidDocument;
  fetchedAt: number;
  /** When a failed signature last forced a fetch before the TTL ran out. */
  refreshedAt: number | undefined;
}

const PLC_DID = /^did:plc:[a-z2-7]{24}$/;
/** Hostname-level did:web only (as AT Protocol allows), with an optional percent-encoded port. */
const WEB_DID = /^did:web:([a-zA-Z0-9.-]+)(%3[aA]([0-9]{1,5}))?$/;
const MAX_DOCUMENT_BYTES = 64 * 1024;
const MAX_CACHED_DIDS = 10_000;
/** A forced refresh (after a failed signature) happens at most this often per DID, so forged tokens cannot hammer the directory. */
const REFRESH_COOLDOWN_MS = 30_000;

/**
 * Resolves `did:plc` (through the PLC directory) and `did:web` (through `/.well-known/did.json`)
 * documents with the runtime's `fetch`, caching each for a TTL. `refresh` asks for a newer document
 * than the cached one (a signature failed: the key may have rotated); it is honoured once per
 * cooldown per DID. Concurrent resolutions of one DID share one fetch.
 *
 * @example
 * const resolver = new DidResolver({ plcUrl: "https://plc.directory", ttlMs: 3_600_000, timeoutMs: 3000, allowPrivate: false, now: Date.now })
 * const { doc } = await resolver.resolve("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
 */
export class DidResolver {
  private readonly cache = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<DidDocument>>();

  constructor(private readonly options: DidResolverOptions) {}

  async resolve(did: string, { refresh = false } = {}): Promise<Resolved> {
    const now = this.options.now();
    const entry = this.cache.get(did);
    const fresh = entry !== undefined && now - entry.fetchedAt < this.options.ttlMs;
    const mayRefresh = entry?.refreshedAt === undefined || now - entry.refreshedAt >= REFRESH_COOLDOWN_MS;
    if (entry && fresh && !(refresh && mayRefresh)) return { doc: entry.doc, cached: true };

    try {
      const doc = await this.fetchOnce(did);
      this.remember(did, { doc, fetchedAt: now, refreshedAt: fresh ? now : entry?.refreshedAt });
      return { doc, cached: false };
    } catch (error) {
      // A forced refresh that fails keeps the document we had; an expired one is not served stale.
      if (entry && fresh) return { doc: entry.doc, cached: true };
      throw error;
    }
  }

  private fetchOnce(did: string): Promise<DidDocument> {
    let pending = this.inFlight.get(did);
    if (!pending) {
      pending = this.fetchDocument(did).finally(() => this.inFlight.delete(did));
      this.inFlight.set(did, pending);
    }
    return pending;
  }

  private remember(did: string, entry: Entry): void {
    this.cache.delete(did);
    if (this.cache.size >= MAX_CACHED_DIDS) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(did, entry);
  }

  private async fetchDocument(did: string): Promise<DidDocument> {
    const url = this.documentUrl(did);
    let text: string | undefined;
    try {
      // Redirects are not followed: a public host must not bounce us to a private one.
      const response = await fetch(url, {
        headers: { Accept: "application/did+ld+json, application/json" },
        redirect: "manual",
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new DidResolutionError(`${did} did not resolve (HTTP ${response.status})`);
      }
      text = await readLimited(response, MAX_DOCUMENT_BYTES);
    } catch (error) {
      if (error instanceof DidResolutionError) throw error;
      throw new DidResolutionError(`could not fetch the DID document of ${did} from ${url.host}`);
    }
    if (text === undefined) throw new DidResolutionError(`the DID document of ${did} is too large`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new DidResolutionError(`the DID document of ${did} is not JSON`);
    }
    const doc = didDocument.safeParse(parsed);
    if (!doc.success) throw new DidResolutionError(`the DID document of ${did} is malformed`);
    if (doc.data.id !== did) throw new DidResolutionError(`the DID document served for ${did} is for another DID`);
    return doc.data;
  }

  private documentUrl(did: string): URL {
    if (PLC_DID.test(did)) return new URL(`${this.options.plcUrl.replace(/\/+$/, "")}/${did}`);
    const web = WEB_DID.exec(did);
    if (!web) throw new DidResolutionError(`${did} is not a resolvable did:plc or did:web`);
    const [, host, , port] = web;
    let origin: URL;
    try {
      origin = new URL(`https://${host}${port ? `:${port}` : ""}`);
    } catch {
      throw new DidResolutionError(`${did} does not name a valid host`);
    }
    if (isPublicHost(origin.hostname)) return new URL("/.well-known/did.json", origin);
    if (!this.options.allowPrivate) throw new DidResolutionError(`${did} names a private or local host`);
    return new URL(`http://${origin.host}/.well-known/did.json`);
  }
}

/** The body as text, or undefined past `maxBytes` (the rest is not read). */
async function readLimited(response: Response, maxBytes: number): Promise<string | undefined> {
  if (!response.body) return "";
  if (Number(response.headers.get("content-length")) > maxBytes) {
    await response.body.cancel();
    return undefined;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(body);
}
