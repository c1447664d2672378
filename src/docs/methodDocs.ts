import { z } from "zod";
import * as schemas from "../schemas.js";

/**
 * What the input schemas cannot say about each method: a description, the output and the
 * method's own errors, all as /work/shared/API.md states them. Outputs are zod schemas so the
 * OpenAPI document, the lexicons' test and the tests that check real responses share one definition.
 */
export interface MethodDoc {
  description: string;
  /** A JSON output, or another encoding (Server-Sent Events) described in words. */
  output: z.ZodType | { encoding: string; description: string };
  /** Error names this method answers besides the ones every method can answer. */
  errors: readonly ErrorName[];
}

/** Every error name of the contract, with its HTTP status. */
export const ERROR_STATUS = {
  InvalidRequest: 400,
  InvalidCipherSuite: 400,
  TooManyMembers: 400,
  KeyPackageExpired: 400,
  InvalidKeyPackage: 400,
  CursorExpired: 400,
  InvalidCommit: 400,
  NotApplicationMessage: 400,
  InvalidGroupInfo: 400,
  RosterMismatch: 400,
  TooManyDevices: 400,
  AuthenticationRequired: 401,
  InvalidToken: 401,
  ExpiredToken: 401,
  TokenReplayed: 401,
  Forbidden: 403,
  NotMember: 403,
  NotCreator: 403,
  DeviceRevoked: 403,
  UnknownDevice: 403,
  ConvoNotFound: 404,
  WelcomeNotFound: 404,
  GroupInfoNotFound: 404,
  EpochMismatch: 409,
  IdempotencyKeyInUse: 409,
  ConvoExists: 409,
  WelcomeGone: 410,
  PayloadTooLarge: 413,
  IdempotencyKeyReused: 422,
  RateLimitExceeded: 429,
  RejoinCooldown: 429,
  NotReady: 503,
} as const;
export type ErrorName = keyof typeof ERROR_STATUS;

/** Errors any XRPC method can answer: bad input, authentication, rate limit, database down. */
export const COMMON_ERRORS: readonly ErrorName[] = [
  "InvalidRequest",
  "AuthenticationRequired",
  "InvalidToken",
  "ExpiredToken",
  "TokenReplayed",
  "RateLimitExceeded",
  "NotReady",
];
/** Errors every procedure can answer besides: body size and idempotency keys. */
export const PROCEDURE_ERRORS: readonly ErrorName[] = [
  "PayloadTooLarge",
  "IdempotencyKeyInUse",
  "IdempotencyKeyReused",
];

const datetime = z.iso.datetime({ offset: true });
const integer = z.number().int().min(0);
const bytes = z.strictObject({ $bytes: z.string() });

export const memberView = z.strictObject({ did: schemas.did, joinedAt: datetime });
export const convoView = z.strictObject({
  id: z.string(),
  groupId: z.string(),
  creator: schemas.did,
  members: z.array(memberView),
  epoch: integer,
  cipherSuite: z.string(),
  createdAt: datetime,
  metadata: z.strictObject({ name: z.string().optional(), description: z.string().optional() }).optional(),
});
export const messageView = z.strictObject({
  id: z.string(),
  convoId: z.string(),
  sender: schemas.did,
  /** "" for the sender's implicit device. */
  senderDevice: z.string(),
  ciphertext: bytes,
  epoch: integer,
  seq: integer,
  messageType: z.enum(["app", "commit", "proposal"]),
  createdAt: datetime,
});
export const commitView = z.strictObject({
  id: z.string(),
  epoch: integer,
  ciphertext: bytes,
  sender: schemas.did,
  senderDevice: z.string(),
  createdAt: datetime,
});
export const keyPackageRef = z.strictObject({
  did: schemas.did,
  /** '' for the DID's implicit device. */
  deviceId: z.string(),
  keyPackage: bytes,
  cipherSuite: z.string(),
  keyPackageHash: z.string(),
  lastResort: z.boolean(),
});

const membershipChange = z.strictObject({ success: z.boolean(), newEpoch: integer });
export const deviceRef = z.strictObject({ did: schemas.did, deviceId: z.string() });
/** The errors of a commit bundle in a roster-checked conversation, besides the conversation's own. */
const bundleErrors: readonly ErrorName[] = [
  "UnknownDevice",
  "DeviceRevoked",
  "InvalidCommit",
  "InvalidGroupInfo",
  "RosterMismatch",
  "EpochMismatch",
];
const success = z.strictObject({ success: z.boolean() });
const convoErrors: readonly ErrorName[] = ["ConvoNotFound", "NotMember"];
/** Errors of a method that acts as one of the caller's devices (`deviceId`). */
const deviceErrors: readonly ErrorName[] = ["UnknownDevice", "DeviceRevoked"];

export const methodDocs: Record<string, MethodDoc> = {
  createConvo: {
    description:
      "Creates a conversation for an MLS group with the caller as creator. Initial members (at most 100 per call) each get the welcome, if one is given. With `groupInfo` (an MLS GroupInfo with the ratchet_tree extension, signed by the caller's device `deviceId`) the conversation is roster-checked: it starts at the GroupInfo's epoch, its members are the DIDs of the GroupInfo's tree (`initialMembers`, if given, must name exactly the others), and the welcome goes to every device of the tree but the caller's.",
    output: convoView,
    errors: ["InvalidCipherSuite", "TooManyMembers", "ConvoExists", "UnknownDevice", "DeviceRevoked", "InvalidGroupInfo", "RosterMismatch"],
  },
  getConvos: {
    description: "The caller's conversations, newest first, a page at a time (bounded in items and bytes).",
    output: z.strictObject({ conversations: z.array(convoView), cursor: z.string().optional() }),
    errors: [],
  },
  getEpoch: {
    description: "The conversation's current MLS epoch.",
    output: z.strictObject({ convoId: z.string(), currentEpoch: integer }),
    errors: convoErrors,
  },
  addMembers: {
    description:
      "Adds members (at most 100 per call), optionally with the commit for the current epoch (an MLS PublicMessage or PrivateMessage of content type commit) and a welcome. Adding someone already active adds nothing. In a roster-checked conversation it takes the commit and `groupInfo` of the new epoch and is processCommit whose commit must add devices of exactly the DIDs of `didList` and remove none.",
    output: membershipChange,
    errors: [...convoErrors, ...bundleErrors, "NotCreator", "TooManyMembers"],
  },
  leaveConvo: {
    description:
      "Leaves the conversation, or removes `targetDid` (the creator or an admin only), optionally with the commit for the current epoch (an MLS PublicMessage or PrivateMessage of content type commit). Leaving twice leaves once. In a roster-checked conversation the caller leaving without a commit leaves at once (its leaves stay in the roster until a member commits their removal); with a commit it takes `groupInfo` and is processCommit whose commit must remove every device of the target and change nothing else.",
    output: membershipChange,
    errors: [...convoErrors, ...bundleErrors, "NotCreator"],
  },
  processCommit: {
    description:
      "Accepts a commit bundle in a roster-checked conversation, all or nothing: the commit for the current epoch, the GroupInfo of the new epoch (signed by the committing device's leaf; by the joiner's new leaf for an external commit) and the Welcome for the devices it adds. Adds and removes are read from the difference between the roster and the GroupInfo's tree: any member device may add devices of any DID; it may remove its own DID's other devices, revoked devices and devices of DIDs that have left; other removals only the creator or an admin. A device of an active member DID may join by external commit (a new device, or a resync of its former leaf) once per REJOIN_COOLDOWN_SECONDS.",
    output: z.strictObject({ newEpoch: integer, seq: integer, added: z.array(deviceRef), removed: z.array(deviceRef) }),
    errors: [...convoErrors, ...bundleErrors, "NotCreator", "TooManyMembers", "RejoinCooldown"],
  },
  getGroupInfo: {
    description:
      "The latest GroupInfo of a roster-checked conversation (with the ratchet_tree extension) and its epoch, for active members: what a new device of a member joins from by external commit.",
    output: z.strictObject({ convoId: z.string(), epoch: integer, groupInfo: bytes }),
    errors: [...convoErrors, "GroupInfoNotFound"],
  },
  sendMessage: {
    description:
      "Stores an MLS application message or proposal byte for byte and gives it the conversation's next `seq`, recording the sending device. Any other MLS message (a commit, Welcome, key package or GroupInfo) is refused; bytes that are no MLS message are stored as opaque application data, except in a roster-checked conversation, where they are refused too and only a device in the roster may send. Messages for an epoch ahead of the conversation's are refused.",
    output: z.strictObject({ messageId: z.string(), seq: integer, epoch: integer, receivedAt: datetime }),
    errors: [...convoErrors, ...deviceErrors, "Forbidden", "NotApplicationMessage", "EpochMismatch"],
  },
  getMessages: {
    description:
      "Messages (application, proposals and commits) in ascending `seq` after `sinceSeq`, `sinceMessage` or the previous page's `cursor`, from the caller's latest joining on; a page is bounded in items and bytes and `cursor` is returned until the end. A position whose following messages retention removed is CursorExpired.",
    output: z.strictObject({ messages: z.array(messageView), cursor: z.string().optional() }),
    errors: [...convoErrors, "CursorExpired"],
  },
  getCommits: {
    description:
      "The accepted commits with epochs from `fromEpoch` to `toEpoch`, oldest first, none before the epoch the caller last joined at; a page is bounded in items and bytes and `cursor` (the last epoch returned) is returned until the end. Asking for commits retention removed is CursorExpired.",
    output: z.strictObject({ convoId: z.string(), commits: z.array(commitView), cursor: z.string().optional() }),
    errors: [...convoErrors, "CursorExpired"],
  },
  updateCursor: {
    description:
      "Records how far the caller's device (`deviceId`, or the implicit device) has read in the conversation: one cursor per device.",
    output: success,
    errors: [...convoErrors, ...deviceErrors],
  },
  getWelcome: {
    description:
      "The welcome for the caller's device (`deviceId`, or the implicit device) in the conversation. The first fetch marks it in flight; fetches within the grace period return it again, until confirmWelcome.",
    output: z.strictObject({ convoId: z.string(), welcome: bytes }),
    errors: [...convoErrors, ...deviceErrors, "WelcomeNotFound", "WelcomeGone"],
  },
  confirmWelcome: {
    description:
      "Phase two of the welcome of the caller's device (`deviceId`, or the implicit device): `success: true` consumes it; `false` records `errorDetails` and leaves it fetchable until the grace period ends. Confirming twice is no error. Other devices' welcomes are untouched.",
    output: z.strictObject({ confirmed: z.boolean() }),
    errors: [...convoErrors, ...deviceErrors, "WelcomeNotFound", "WelcomeGone"],
  },
  publishKeyPackage: {
    description:
      "Publishes one of the caller's key packages: an MLSMessage holding a KeyPackage whose basic credential identity is the caller's DID (the implicit device) or `<callerDid>#<deviceId>` of a registered, unrevoked device of the caller (else InvalidKeyPackage). Publishing the same bytes again refreshes its expiry (and keeps its lastResort flag).",
    output: success,
    errors: ["InvalidCipherSuite", "KeyPackageExpired", "InvalidKeyPackage"],
  },
  publishKeyPackages: {
    description:
      "Publishes up to 100 of the caller's key packages in one call, each as publishKeyPackage takes it; one refused package refuses the whole batch. A batch may hold at most one last-resort package per device and cipher suite.",
    output: z.strictObject({ published: integer, duplicates: integer }),
    errors: ["InvalidCipherSuite", "KeyPackageExpired", "InvalidKeyPackage"],
  },
  getKeyPackages: {
    description:
      "Hands out one unexpired key package per live device (the implicit device and every registered, unrevoked one) of each DID. A one-time package goes to one caller only, even among concurrent callers, and is reserved for that caller: asking again for the same device within KEY_PACKAGE_RESERVATION_SECONDS returns it again while usable; a caller gets at most 3 fresh ones per device per reservation. A device with nothing else left for the caller hands out its last-resort package (never consumed). DIDs none of whose devices has one are listed in `missing`. The answer holds whole DIDs in the order asked while it fits in MAX_PAGE_BYTES (the first DID always); the DIDs past that are listed in `deferred`, none of their packages was handed out: ask again for them.",
    output: z.strictObject({
      keyPackages: z.array(keyPackageRef),
      missing: z.array(schemas.did),
      deferred: z.array(schemas.did).optional(),
    }),
    errors: ["InvalidCipherSuite"],
  },
  getKeyPackageStats: {
    description:
      "How many of the caller's one-time key packages are unexpired and not handed out yet (last-resort ones do not count), of the device it names (`deviceId`; omitted: the implicit device, whose credential is the bare DID), and whether to publish more.",
    output: z.strictObject({ available: integer, threshold: integer, needsReplenish: z.boolean() }),
    errors: ["InvalidCipherSuite", "UnknownDevice", "DeviceRevoked"],
  },
  registerDevice: {
    description:
      "Registers a device of the caller; its MLS credential identity is `<did>#<deviceId>`. Registering a live device again answers the same (a given `name` renames it). A revoked device id can never be registered again.",
    output: z.strictObject({ deviceId: schemas.deviceId, credentialIdentity: z.string() }),
    errors: ["TooManyDevices", "DeviceRevoked"],
  },
  getDevices: {
    description:
      "The caller's devices, oldest first: every live one and the most recently revoked ones (revoked devices accumulate, so only the latest are listed).",
    output: z.strictObject({
      devices: z.array(
        z.strictObject({
          deviceId: schemas.deviceId,
          name: z.string().optional(),
          createdAt: datetime,
          lastSeenAt: datetime,
          revoked: z.boolean(),
        }),
      ),
    }),
    errors: [],
  },
  revokeDevice: {
    description:
      "Revokes a device of the caller for good: its unhanded key packages are deleted, its live welcomes retired, and each conversation whose roster holds it gets a `deviceRevoked` membership event so that a member commits its removal. Revoking again is no error.",
    output: z.strictObject({ revoked: z.boolean() }),
    errors: ["UnknownDevice"],
  },
  streamConvoEvents: {
    description:
      "Server-Sent Events for one conversation: `message` (with `sender` and `senderDevice`), `membership` and `info` events, each with an `id` that is its cursor. Reconnecting with `cursor` (or `Last-Event-ID`) replays every later event first (from the caller's latest joining on); a cursor whose following events retention removed is CursorExpired. With `deviceId`, the stream ends after that device's own `deviceRemoved` or `deviceRevoked` event.",
    output: { encoding: "text/event-stream", description: "Server-Sent Events: message, membership and info events" },
    errors: [...convoErrors, ...deviceErrors, "CursorExpired"],
  },
};
