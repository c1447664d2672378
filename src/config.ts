import { z } from "zod";
import { databaseLimits } from "./db/limits.js";
import { MAX_ANSWER_BYTES, MAX_EVENT_LENGTH } from "./client/limits.js";
import { MAX_DID_LENGTH } from "./schemas.js";

/** The seven cipher suites of RFC 9420, section 17.1. */
export const RFC9420_CIPHER_SUITES = [
  "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
  "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
  "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
  "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448",
  "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
  "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448",
  "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
] as const;

const bool = z
  .enum(["true", "false", "1", "0", "on", "off", "yes", "no"])
  .transform((value) => ["true", "1", "on", "yes"].includes(value));
const list = z.string().transform((value) =>
  value
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean),
);
const int = (min: number) => z.coerce.number().int().min(min);
const did = z.string().regex(/^did:[a-z]+:[a-zA-Z0-9._:%-]+$/, "must be a DID");

/** The default bound of one page of a list answer or of an event stream, in bytes of JSON. */
export const DEFAULT_MAX_PAGE_BYTES = 8 * 1024 * 1024;
/** The highest bound: half the typed client's cap on an answer, room for the envelope. */
const MAX_MAX_PAGE_BYTES = MAX_ANSWER_BYTES / 2;
/**
 * The largest ciphertext: a page always holds its first item, so one message's event (base64, 4/3 of its bytes, and
 * its JSON around it) must fit the typed client's cap on an event, with room to spare.
 */
const MAX_MAX_CIPHERTEXT_BYTES = MAX_EVENT_LENGTH / 2;
const mib = (bytes: number) => `${bytes / 2 ** 20} MiB`;
/**
 * The most members a conversation may be configured for: getConvos answers a conversation with all its members, each
 * at most 2,112 bytes of JSON (its DID, its joinedAt and the JSON around them), and that must fit MAX_MAX_PAGE_BYTES.
 */
const MAX_MEMBERS = Math.floor(MAX_MAX_PAGE_BYTES / (MAX_DID_LENGTH + 64));

/** Every environment variable the server reads, with its default. `.env.example` mirrors this. */
const configSchema = z.object({
  PORT: int(0).max(65535).default(3000),
  HOST: z.string().min(1).default("127.0.0.1"),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),

  DATABASE_URL: z.string().url().optional(),
  DATABASE_DRIVER: z.enum(["postgres", "neon"]).default("postgres"),
  DATABASE_POOL_MAX: int(1).default(10),
  DATABASE_PREPARE: bool.default(true),
  PGLITE_DIR: z.string().min(1).default("./data"),
  MIGRATE_ON_START: bool.default(true),

  DEV_JWT_SECRET: z.string().min(16, "must be at least 16 characters").optional(),
  SERVICE_DID: did.optional(),
  PLC_DIRECTORY_URL: z.string().url().default("https://plc.directory"),
  ENFORCE_LXM: bool.default(false),
  JWT_CLOCK_SKEW_SECONDS: int(0).max(600).default(30),
  DID_CACHE_TTL_SECONDS: int(1).default(3600),
  DID_RESOLVE_TIMEOUT_MS: int(100).default(3000),
  DID_WEB_ALLOW_PRIVATE: bool.default(false),
  ADMIN_DIDS: list.pipe(z.array(did)).default([]),

  // A Welcome arrives in a body and leaves whole in getWelcome's answer, which the typed client must be able to read.
  BODY_LIMIT_BYTES: int(1024)
    .max(
      MAX_MAX_PAGE_BYTES,
      `must be at most ${MAX_MAX_PAGE_BYTES} (${mib(MAX_MAX_PAGE_BYTES)}): a Welcome comes back whole in getWelcome, and the typed client refuses answers over ${mib(MAX_ANSWER_BYTES)}`,
    )
    .default(2 * 1024 * 1024),
  REQUEST_TIMEOUT_MS: int(100).default(30_000),
  RATE_LIMIT_WINDOW_SECONDS: int(1).default(60),
  RATE_LIMIT_PER_DID: int(0).default(1200),
  RATE_LIMIT_PER_IP: int(0).default(0),
  RATE_LIMIT_IP_HEADER: z
    .string()
    .regex(/^[A-Za-z0-9-]+$/, "must be a header name")
    .optional(),
  MAX_CIPHERTEXT_BYTES: int(1)
    .max(
      MAX_MAX_CIPHERTEXT_BYTES,
      `must be at most ${MAX_MAX_CIPHERTEXT_BYTES} (${mib(MAX_MAX_CIPHERTEXT_BYTES)}): the typed client refuses a stream event over ${mib(MAX_EVENT_LENGTH)}`,
    )
    .default(1024 * 1024),
  // Group commit (sendMessage): the most sends, and ciphertext bytes, one statement stores.
  SEND_BATCH_MAX_ITEMS: int(1).max(1000).default(128),
  SEND_BATCH_MAX_BYTES: int(1).default(4 * 1024 * 1024),
  // Batches in flight at once, each for its share of the conversations (their commits share WAL flushes); each
  // takes a pool connection while it is stored, so below DATABASE_POOL_MAX (see poolOutlastsLanes).
  SEND_BATCH_LANES: int(1).max(64).default(2),
  MAX_KEY_PACKAGE_BYTES: int(1).default(64 * 1024),
  MAX_MEMBERS_PER_CONVO: int(2)
    .max(
      MAX_MEMBERS,
      `must be at most ${MAX_MEMBERS}: getConvos answers a conversation's members whole, and the typed client reads at most ${mib(MAX_MAX_PAGE_BYTES)} of them`,
    )
    .default(1000),
  CIPHER_SUITES: list.default([...RFC9420_CIPHER_SUITES]),
  KEY_PACKAGE_THRESHOLD: int(0).default(10),

  IDEMPOTENCY_TTL_SECONDS: int(1).default(86_400),
  IDEMPOTENCY_WAIT_MS: int(1).default(10_000),
  // Answers this process committed, kept to answer repeats without the database (bytes; 0: none kept). 8 MiB, about
  // 7,000 sends' answers: a byte-for-byte repeat past them (key in the header) is read by key (below) at nearly the
  // same cost, and each MiB kept here cost ~3 MB of RSS under load (scenario 6: 180 MB at 8 MiB, 204-209 MB at 16).
  IDEMPOTENCY_RECENT_BYTES: int(0).default(8 * 1024 * 1024),
  // Requests this process committed, kept as fingerprints (32 bytes each, reserved at start; 24 resident as they fill)
  // after their answers left the above: a byte-for-byte repeat reads its answer by key, skipping the write path
  // (entries; 0: none kept). 262,144 hold about 35 s of this machine's top send rate (7,000 keyed sends/s), 8 MB.
  IDEMPOTENCY_KNOWN_REQUESTS: int(0)
    .max(8 * 1024 * 1024)
    .default(262_144),
  WELCOME_GRACE_SECONDS: int(1).default(300),
  RETENTION_DAYS: int(1).default(30),
  CLEANUP_INTERVAL_SECONDS: int(0).default(300),

  // Welcome lifecycle and key package reservations (rules 5 and 7)
  WELCOME_TTL_SECONDS: int(1).default(7 * 86_400),
  KEY_PACKAGE_RESERVATION_SECONDS: int(1).default(600),

  // Devices and roster-checked conversations
  MAX_DEVICES_PER_DID: int(1).default(10),
  REJOIN_COOLDOWN_SECONDS: int(0).default(60),

  EVENTS_POLL_MS: int(10).default(1000),
  EVENTS_SAFETY_POLL_MS: int(100).default(30_000),
  EVENTS_KEEPALIVE_MS: int(10).default(15_000),
  EVENTS_MAX_BACKLOG: int(1).default(1000),
  EVENTS_WRITE_TIMEOUT_MS: int(10).default(10_000),

  // --- Database time limits (bounded waits); unset: derived from REQUEST_TIMEOUT_MS (src/db/limits.ts)
  // At least 50 ms: a held send's wait for its conversation's row is half of it (heldSendWaitMs), and a wait of a
  // millisecond or two would re-issue the held statement hundreds of times a second.
  DB_STATEMENT_TIMEOUT_MS: int(50).optional(),
  DB_ROUND_TRIP_TIMEOUT_MS: int(1).optional(),
  DB_MAINTENANCE_TIMEOUT_MS: int(0).default(600_000),
  // Event stream caps (per instance): more streams answer 429 RateLimitExceeded.
  EVENTS_MAX_STREAMS_PER_CALLER: int(1).default(5),
  EVENTS_MAX_STREAMS: int(1).default(10_000),
  // List answers and stream pages (getMessages, getCommits, getConvos, events)
  MAX_PAGE_BYTES: int(1024)
    .max(
      MAX_MAX_PAGE_BYTES,
      `must be at most ${MAX_MAX_PAGE_BYTES} (${mib(MAX_MAX_PAGE_BYTES)}): the typed client refuses answers over ${mib(MAX_ANSWER_BYTES)}`,
    )
    .default(DEFAULT_MAX_PAGE_BYTES),
  // HTTP edge and operations: body reading, server timeouts and connection cap, metrics access, migrations.
  NODE_ENV: z.string().optional(),
  BODY_READ_TIMEOUT_MS: int(100).default(10_000),
  SERVER_HEADERS_TIMEOUT_MS: int(100).default(10_000),
  SERVER_REQUEST_TIMEOUT_MS: int(100).default(30_000),
  SERVER_KEEPALIVE_TIMEOUT_MS: int(100).default(5_000),
  SERVER_MAX_CONNECTIONS: int(1).default(4096),
  METRICS_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  METRICS_PORT: int(0).max(65535).optional(),
  MIGRATE_LOCK_TIMEOUT_MS: int(10).default(1000),
  MIGRATE_ATTEMPTS: int(1).default(30),
  // Authentication and pre-auth limits (issue 13: DID resolution bounds, token lifetime, dev tokens)
  MAX_TOKEN_LIFETIME_SECONDS: int(1).default(3600),
  ALLOW_DEV_TOKENS: bool.default(false),
  RATE_LIMIT_XRPC_PER_IP: int(0).default(20_000),
  DID_CACHE_MAX_BYTES: int(64 * 1024).default(8 * 1024 * 1024),
  DID_FAILURE_TTL_SECONDS: int(1).default(30),
  DID_RESOLVE_MAX_CONCURRENT: int(1).default(32),
  DID_RESOLVE_MAX_PER_HOST: int(1).default(4),
});

/**
 * The most JSON one handed-out key package adds around its base64 bytes: its DID (at most 2,048 characters), device
 * id (64), hash (64 hex digits), cipher suite name, lastResort and field names.
 */
const KEY_PACKAGE_ENVELOPE_BYTES = 2400;

/**
 * getKeyPackages always answers its first DID whole: one package per device (MAX_DEVICES_PER_DID and the implicit
 * one), base64 and its envelope each, must fit in MAX_MAX_PAGE_BYTES, so the typed client can read the answer.
 */
const keyPackagesFit = (config: z.infer<typeof configSchema>, issues: z.RefinementCtx) => {
  const onePackage = 4 * Math.ceil(config.MAX_KEY_PACKAGE_BYTES / 3) + KEY_PACKAGE_ENVELOPE_BYTES;
  if ((config.MAX_DEVICES_PER_DID + 1) * onePackage > MAX_MAX_PAGE_BYTES) {
    issues.addIssue({
      code: "custom",
      path: ["MAX_KEY_PACKAGE_BYTES"],
      message: `in base64 with its envelope (${KEY_PACKAGE_ENVELOPE_BYTES} bytes), times MAX_DEVICES_PER_DID + 1, must be at most ${MAX_MAX_PAGE_BYTES} (one DID's answer)`,
    });
  }
};

/**
 * Each send lane's batch takes a connection of the pool while it is stored: as many lanes as connections would leave
 * every other request waiting for a lane to commit. (A lane whose conversation another instance holds takes a
 * second one for its held statement; that is contention between instances, not the steady state this sizes.) PGlite
 * (no DATABASE_URL) has one connection that everything shares, and no pool to size.
 */
const poolOutlastsLanes = (config: z.infer<typeof configSchema>, issues: z.RefinementCtx) => {
  if (config.DATABASE_URL !== undefined && config.SEND_BATCH_LANES >= config.DATABASE_POOL_MAX) {
    issues.addIssue({
      code: "custom",
      path: ["SEND_BATCH_LANES"],
      message: `${config.SEND_BATCH_LANES} must be below DATABASE_POOL_MAX (${config.DATABASE_POOL_MAX}): each lane's batch takes a connection`,
    });
  }
};

/** A statement the database may still commit must end before the request answers "retry". */
const databaseLimitsInOrder = (config: z.infer<typeof configSchema>, issues: z.RefinementCtx) => {
  const { statementMs, roundTripMs } = databaseLimits(config);
  if (statementMs >= config.REQUEST_TIMEOUT_MS) {
    issues.addIssue({ code: "custom", path: ["DB_STATEMENT_TIMEOUT_MS"], message: "must be below REQUEST_TIMEOUT_MS" });
  }
  if (roundTripMs <= statementMs) {
    issues.addIssue({
      code: "custom",
      path: ["DB_ROUND_TRIP_TIMEOUT_MS"],
      message: "must be above the statement timeout",
    });
  }
};

export type Config = z.infer<typeof configSchema>;
export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses the environment; empty strings count as unset. Throws one readable line per bad value. */
export function loadConfig(env: Env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ""));
  const parsed = configSchema
    .superRefine(databaseLimitsInOrder)
    .superRefine(keyPackagesFit)
    .superRefine(poolOutlastsLanes)
    .safeParse(present);
  const problems = parsed.success
    ? productionProblems(parsed.data)
    : parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
  if (problems.length) throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  return parsed.data!;
}

/** Production refuses the development conveniences: embedded PGlite (data local to one instance) and no way to authenticate. */
function productionProblems(config: Config): string[] {
  if (config.NODE_ENV !== "production") return [];
  const problems: string[] = [];
  if (!config.DATABASE_URL)
    problems.push("DATABASE_URL: required when NODE_ENV=production (PGlite keeps data on one instance)");
  if (!config.SERVICE_DID && !config.DEV_JWT_SECRET) {
    problems.push(
      "SERVICE_DID: required when NODE_ENV=production (or DEV_JWT_SECRET for development tokens): no auth mode is configured",
    );
  }
  return problems;
}

/** Which tokens this server accepts, for the start-up log line. */
export function authMode(config: Config): string {
  const modes = [
    config.SERVICE_DID && `service tokens for ${config.SERVICE_DID}`,
    config.DEV_JWT_SECRET && "development tokens (HS256)",
  ];
  return modes.filter(Boolean).join(" and ") || "none: every XRPC call answers 401";
}
