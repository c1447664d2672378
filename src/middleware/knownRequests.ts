import { FINGERPRINT_WORDS as WORDS, type Fingerprint } from "./requestFingerprint.js";

/**
 * The keyed requests this process committed, long after their answers left `RecentAnswers`: each one is a
 * fingerprint of (caller, method, key, body bytes) and its record's expiry, not the answer. A repeat with the same
 * bytes is then a retry of a committed request, and its answer is one indexed read of that record (the expiry, to
 * the millisecond, tells it from a later record of the same key): no parsing, no checks, no write path. Anything
 * else (a key another instance committed, other bytes) takes the general path.
 *
 * Held in typed arrays allocated once, 32 bytes per entry, none of it on the garbage-collected heap: as a Map of
 * strings the same entries cost ~120 bytes each and, at 70,000 entries, ~20 MB more of the server's RSS under load.
 * The entries are a ring in the order added (the oldest is overwritten first), found through an open-addressing
 * index of twice as many slots.
 */
export class KnownRequests {
  /** Entry i's fingerprint: words `WORDS * i` to `WORDS * i + 3`. */
  private readonly prints: Uint32Array;
  /** Entry i's record expiry, ms since the epoch. */
  private readonly expiries: Float64Array;
  /** Linear probing from a fingerprint's first word: entry index + 1, or 0 for a free slot. */
  private readonly index: Int32Array;
  private readonly mask: number;
  /** The ring position the next new entry takes. */
  private next = 0;
  private count = 0;

  /** `capacity`: the most entries held (at least 1). */
  constructor(private readonly capacity: number) {
    this.prints = new Uint32Array(capacity * WORDS);
    this.expiries = new Float64Array(capacity);
    const slots = 2 ** Math.ceil(Math.log2(2 * capacity));
    this.index = new Int32Array(slots);
    this.mask = slots - 1;
  }

  /** Whether any request is known: when none is, a caller need not compute a fingerprint. */
  get empty(): boolean {
    return this.count === 0;
  }

  /** The expiry of the record the request committed here, if it has not expired at `now`. */
  expiryOf(fingerprint: Fingerprint, now: Date): Date | undefined {
    const slot = this.find(fingerprint);
    if (slot < 0) return undefined;
    const expiry = this.expiries[this.index[slot]! - 1]!;
    return now.getTime() < expiry ? new Date(expiry) : undefined;
  }

  /** After the request's answer committed, with its record's expiry. */
  add(fingerprint: Fingerprint, expiresAt: Date): void {
    const known = this.find(fingerprint);
    if (known >= 0) {
      this.expiries[this.index[known]! - 1] = expiresAt.getTime();
      return;
    }
    const entry = this.next;
    if (this.count === this.capacity)
      this.unindex(this.find(this.prints.subarray(WORDS * entry, WORDS * entry + WORDS)));
    else this.count++;
    this.prints.set(fingerprint, WORDS * entry);
    this.expiries[entry] = expiresAt.getTime();
    let slot = fingerprint[0]! & this.mask;
    while (this.index[slot] !== 0) slot = (slot + 1) & this.mask;
    this.index[slot] = entry + 1;
    this.next = (entry + 1) % this.capacity;
  }

  /** The index slot that holds the fingerprint's entry, or -1. */
  private find(fingerprint: Fingerprint): number {
    for (let slot = fingerprint[0]! & this.mask; ; slot = (slot + 1) & this.mask) {
      const held = this.index[slot]!;
      if (held === 0) return -1;
      if (this.holds(held - 1, fingerprint)) return slot;
    }
  }

  private holds(entry: number, fingerprint: Fingerprint): boolean {
    const at = WORDS * entry;
    for (let i = 0; i < WORDS; i++) if (this.prints[at + i] !== fingerprint[i]) return false;
    return true;
  }

  /**
   * Frees an index slot, moving back the entries probed past it (backward-shift deletion): a lookup stops at the
   * first free slot, so no entry may sit beyond a free slot on its way from its home slot.
   */
  private unindex(freed: number): void {
    this.index[freed] = 0;
    for (let slot = (freed + 1) & this.mask; this.index[slot] !== 0; slot = (slot + 1) & this.mask) {
      const home = this.prints[WORDS * (this.index[slot]! - 1)]! & this.mask;
      // The entry may stay when its home lies cyclically in (freed, slot]; else it moves into the free slot.
      const stays = freed <= slot ? freed < home && home <= slot : freed < home || home <= slot;
      if (stays) continue;
      this.index[freed] = this.index[slot]!;
      this.index[slot] = 0;
      freed = slot;
    }
  }
}
