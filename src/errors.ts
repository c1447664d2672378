/**
 * The XRPC error model: every failure a client can see is one of these, rendered once in
 * `app.onError` as `{"error": name, "message": message}`.
 */
export class XrpcError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 408 | 409 | 410 | 413 | 422 | 429 | 500 | 503,
    readonly error: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    // An answer to the client, not a fault: no stack trace, whose capture (async frames and all) was ~9% of a
    // 401's CPU. Errors that are faults keep theirs.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.name = "XrpcError";
  }
}

export const invalidRequest = (message: string, name = "InvalidRequest") => new XrpcError(400, name, message);
export const authRequired = (message: string, name = "AuthenticationRequired") => new XrpcError(401, name, message);
export const forbidden = (message: string, name = "Forbidden") => new XrpcError(403, name, message);
export const notMember = () => new XrpcError(403, "NotMember", "caller is not an active member of this conversation");
export const notCreator = () =>
  new XrpcError(403, "NotCreator", "only the conversation's creator or an admin may do this");
export const convoNotFound = () => new XrpcError(404, "ConvoNotFound", "conversation not found");
export const epochMismatch = (current: number) =>
  new XrpcError(409, "EpochMismatch", `epoch mismatch: the conversation is at epoch ${current}`);
export const notReady = (retryAfterSeconds = 1) =>
  new XrpcError(503, "NotReady", "the database is unreachable; retry shortly", {
    "Retry-After": String(retryAfterSeconds),
  });
export const tooManyMembers = (message: string) => new XrpcError(400, "TooManyMembers", message);
export const invalidCipherSuite = (suite: string) =>
  new XrpcError(400, "InvalidCipherSuite", `cipher suite ${suite} is not accepted by this server`);
export const cursorExpired = (message: string) => new XrpcError(400, "CursorExpired", message);
export const convoExists = () => new XrpcError(409, "ConvoExists", "a conversation with this groupId already exists");
export const invalidKeyPackage = (message: string) => new XrpcError(400, "InvalidKeyPackage", message);
export const invalidCommit = (message: string) => new XrpcError(400, "InvalidCommit", message);
export const notApplicationMessage = (message: string) => new XrpcError(400, "NotApplicationMessage", message);
export const invalidGroupInfo = (message: string) => new XrpcError(400, "InvalidGroupInfo", message);
export const rosterMismatch = (message: string) => new XrpcError(400, "RosterMismatch", message);
export const tooManyDevices = (max: number) =>
  new XrpcError(400, "TooManyDevices", `a DID may have at most ${max} live devices`);
export const unknownDevice = () =>
  new XrpcError(403, "UnknownDevice", "deviceId names no device registered to the caller");
export const deviceRevoked = () => new XrpcError(403, "DeviceRevoked", "this device was revoked");
export const groupInfoNotFound = () =>
  new XrpcError(404, "GroupInfoNotFound", "this conversation keeps no GroupInfo: it is not roster-checked");
export const rejoinCooldown = (retryAfterSeconds: number) =>
  new XrpcError(
    429,
    "RejoinCooldown",
    `this device joined this conversation by external commit moments ago; retry in ${retryAfterSeconds} s`,
    {
      "Retry-After": String(retryAfterSeconds),
    },
  );
