/**
 * Classes of the transaction-scoped advisory locks (`pg_advisory_xact_lock(class, key)`), one per purpose, in one
 * place: two purposes sharing a class and key would wait on each other, and one holding it while taking the other
 * in the opposite order deadlocks (publishing once shared registration's class per DID and did).
 */
export const ADVISORY_LOCK = {
  /** getKeyPackages: one claim at a time per (caller, owner). */
  keyPackageReservation: 71_460,
  /** registerDevice: the device limit of one DID. */
  deviceRegistration: 71_461,
  /** publishKeyPackages: one owner's last-resort replacement. */
  keyPackagePublish: 71_462,
  /** Idempotency keys: a claim holds its key's lock, so a batch of sends can skip a key in use instead of waiting. */
  idempotencyKey: 71_463,
} as const;
