import { BoundedCache } from "../boundedCache.js";
import { atprotoSigningKey, didDocument } from "./didDocument.js";
import { isPublicHost } from "./publicHost.js";

export interface DidResolverOptions {
  /** Base URL of the PLC directory (`https://plc.directory`). */
  plcUrl: string;
  /** How long a resolved signing key is served from the cache. */
  ttlMs: number;
  /** How long a failed resolution is answered from the cache, without fetching again. */
  failureTtlMs: number;
  /** How long one resolution may take. */
  timeoutMs: number;
  /** What the cache may hold: DIDs, keys and failure reasons, plus a fixed overhead per entry. */
  maxCacheBytes: number;
  /** Resolutions under way at once, in all. */
  maxConcurrent: number;
  /** Resolutions under way at once per did:web host. */
  maxPerHost: number;
  /** Tests only: did:web may name private, loopback and link-local hosts, fetched over http. */
  allowPrivate: boolean;
  /** The time in milliseconds (the app's clock). */
  now: () => number;
  /** How documents are fetched; the runtime's `fetch` unless given. */
  fetch?: typeof fetch;
}

export interface ResolvedKey {
  /** The issuer's AT Protocol signing key as a `did:key`; undefined when its document has none. */
  key: string | undefined;
  /** True when the key came from the cache rather than a fetch made for this call. */
  cached: boolean;
}

/** Thrown when a DID has no usable document; `message` says why, for the 401 the caller answers. */
export class DidResolutionError extends Error {
  override name = "DidResolutionError";
}

/** Thrown when too many resolutions are under way (in all, or at the DID's host): nothing was fetched. */
export class ResolverBusyError extends Error {
  override name = "ResolverBusyError";
}

interface Entry {
  /** Set for a resolved DID (even when its document had no key); a failure has `failure` instead. */
  key: string | undefined;
  failure: string | undefined;
  expiresAt: number;
  /** When a failed signature last forced a fetch before the TTL ran out. */
  refreshedAt: number | undefined;
}

interface Fetch {
  result: Promise<string | undefined>;
  host: string;
  startedAt: number;
}

const PLC_DID = /^did:plc:[a-z2-7]{24}$/;
/** Hostname-level did:web only (as AT Protocol allows), with an optional percent-encoded port. */
const WEB_DID = /^did:web:([a-zA-Z0-9.-]{1,253})(%3[aA]([0-9]{1,5}))?$/;
/** AT Protocol DID documents are about a kilobyte; anything past this is refused unparsed. */
const MAX_DOCUMENT_BYTES = 16 * 1024;
/** A forced refresh (after a failed signature) happens at most this often per DID, so forged tokens cannot hammer the directory. */
const REFRESH_COOLDOWN_MS = 30_000;
/** How long past its TTL a known key still serves while resolving it fails or is refused as busy. */
const STALE_IF_ERROR_MS = 60 * 60 * 1000;
/**
 * A fixed overhead per entry, on top of its strings (two bytes a character): the entry object, its boxed expiry, the
 * cache's record, the map's slot, and the string pieces `formatDidKey` builds a key from. Measured with did:plc signing
 * keys (test/auth/didResolverMemory.test.ts): at 160 here the full cache held 1.11 times its budget of heap; at 320,
 * 0.80 (0.88 at the default 8 MB outside vitest; a cache of failed resolutions, 0.73).
 */
const ENTRY_OVERHEAD_BYTES = 320;

/**
 * Resolves the AT Protocol signing key of a `did:plc` (through the PLC directory) or `did:web`
 * (through `/.well-known/did.json`) with the runtime's `fetch`. Only the key is kept, in a cache
 * bounded in bytes (least recently used first out) for a TTL; failures are kept briefly. Documents
 * over `MAX_DOCUMENT_BYTES` are refused before parsing. At most `maxConcurrent` fetches run at once
 * (`maxPerHost` per did:web host); past that `ResolverBusyError`, with nothing fetched. Concurrent
 * resolutions of one DID share one fetch. `refresh` asks for a newer key than the cached one (a
 * signature failed: the key may have rotated); it is honoured once per cooldown per DID.
 *
 * @example
 * const resolver = new DidResolver({ plcUrl: "https://plc.directory", ttlMs: 3_600_000, failureTtlMs: 30_000, timeoutMs: 3000, maxCacheBytes: 8 << 20, maxConcurrent: 32, maxPerHost: 4, allowPrivate: false, now: Date.now })
 * const { key } = await resolver.resolve("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
 */
export class DidResolver {
  private readonly cache: BoundedCache<Entry>;
  private readonly inFlight = new Map<string, Fetch>();

  constructor(private readonly options: DidResolverOptions) {
    this.cache = new BoundedCache({ maxBytes: options.maxCacheBytes });
  }

  async resolve(did: string, { refresh = false } = {}): Promise<ResolvedKey> {
    const now = this.options.now();
    const entry = this.live(did, now);
    if (entry?.failure !== undefined) throw new DidResolutionError(entry.failure);
    const mayRefresh = entry?.refreshedAt === undefined || now - entry.refreshedAt >= REFRESH_COOLDOWN_MS;
    if (entry && !(refresh && mayRefresh)) {
      this.cache.touch(did);
      return { key: entry.key, cached: true };
    }

    try {
      const key = await this.fetchOnce(did, now);
      this.remember(did, {
        key,
        failure: undefined,
        expiresAt: now + this.options.ttlMs,
        refreshedAt: entry ? now : undefined,
      });
      return { key, cached: false };
    } catch (error) {
      // A forced refresh that fails keeps the key we had. A key expired less than STALE_IF_ERROR_MS ago
      // is served while resolution fails or is busy: a flood of forged issuers must not lock out users
      // whose key the cache knew.
      if (entry) return { key: entry.key, cached: true };
      const stale = this.cache.get(did);
      if (stale?.key !== undefined && now < stale.expiresAt + STALE_IF_ERROR_MS)
        return { key: stale.key, cached: true };
      if (error instanceof DidResolutionError) {
        const expiresAt = now + this.options.failureTtlMs;
        this.remember(did, { key: undefined, failure: error.message, expiresAt, refreshedAt: undefined });
      }
      throw error;
    }
  }

  /** The signing key cached for `did` while it is fresh: a token verified with another key (or none) must be verified again. */
  cachedKey(did: string): string | undefined {
    const entry = this.live(did, this.options.now());
    return entry?.failure === undefined ? entry?.key : undefined;
  }

  private live(did: string, now: number): Entry | undefined {
    const entry = this.cache.get(did);
    return entry && now < entry.expiresAt ? entry : undefined;
  }

  private remember(did: string, entry: Entry): void {
    const bytes = ENTRY_OVERHEAD_BYTES + 2 * (did.length + (entry.key?.length ?? 0) + (entry.failure?.length ?? 0));
    this.cache.set(did, entry, bytes);
  }

  private fetchOnce(did: string, now: number): Promise<string | undefined> {
    const { timeoutMs, maxConcurrent, maxPerHost } = this.options;
    // A fetch whose request went away without settling (a cancelled Worker invocation) must not hold its slot.
    for (const [key, { startedAt }] of this.inFlight) if (now - startedAt > 2 * timeoutMs) this.inFlight.delete(key);
    const running = this.inFlight.get(did);
    if (running) return withTimeout(running.result, timeoutMs, did);

    const url = this.documentUrl(did);
    // Per host name, whatever the port: one machine behind many did:web names on different ports is still one.
    const host = PLC_DID.test(did) ? "" : url.hostname;
    const atHost = host ? [...this.inFlight.values()].filter((other) => other.host === host).length : 0;
    if (this.inFlight.size >= maxConcurrent || atHost >= maxPerHost) {
      throw new ResolverBusyError(`too many DID resolutions under way${atHost >= maxPerHost ? ` at ${host}` : ""}`);
    }
    const current: Fetch = { result: this.fetchKey(did, url), host, startedAt: now };
    current.result
      .finally(() => {
        if (this.inFlight.get(did) === current) this.inFlight.delete(did);
      })
      .catch(() => {}); // the caller handles the failure
    this.inFlight.set(did, current);
    // The first caller waits no longer than the others: a fetch that never settles must not hold a request.
    return withTimeout(current.result, timeoutMs, did);
  }

  private async fetchKey(did: string, url: URL): Promise<string | undefined> {
    let text: string | undefined;
    try {
      // Redirects are not followed: a public host must not bounce us to a private one.
      const response = await (this.options.fetch ?? fetch)(url, {
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
    return atprotoSigningKey(doc.data);
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

/** A joined fetch is bounded by the joiner's own timer too: the request that started it may go away first. */
function withTimeout<T>(promise: Promise<T>, ms: number, did: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DidResolutionError(`resolving ${did} took too long`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
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
