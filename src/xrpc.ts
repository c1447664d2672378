import type { Context, MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import type { AppContext } from "./context.js";
import type { Queryable } from "./db/driver.js";
import { invalidRequest, XrpcError } from "./errors.js";
import { parseJsonBody, readBodyText } from "./requestBody.js";
import type { KeyClaim, OnceOutcome } from "./services/idempotencyKeys.js";
import type { SendCoalescer } from "./services/sendCoalescer.js";

declare module "hono" {
  interface ContextVariableMap {
    /** The application context, set once by the app. */
    app: AppContext;
    /** The authenticated caller's DID. */
    caller: string;
    /** Where the handler runs its SQL: the pool, or the transaction the idempotency middleware opened. */
    db: Queryable;
    /** The JSON text of the answer, as sent: what the idempotency middleware stores without re-reading the body. */
    answer: string | undefined;
    /** The request's body text, once something read it (`bodyText`). */
    bodyText: Promise<string> | undefined;
    /** The request's parsed JSON body, once something read it (`jsonBody`). */
    jsonBody: Promise<unknown> | undefined;
    /** The request's idempotency key, when it has one (set by the idempotency middleware). */
    idempotencyKey: string | undefined;
    /** Conversations besides the body's `convoId` whose events the handler wrote: their streams wake after commit. */
    changedConvos: string[] | undefined;
    /** The body's `convoId` was announced by the write itself (a send batch): `announce` leaves it. */
    announced: boolean | undefined;
    /** This app's group commit for sendMessage (set by the app). */
    sends: SendCoalescer;
    /** Whether the request's deadline passed (set by requestDeadline): from then on it starts no statement. */
    deadlinePassed: () => boolean;
  }
}

export const NSID_PREFIX = "blue.catbird.mls.";

/** What a handler gets besides its input. */
export interface HandlerContext {
  app: AppContext;
  caller: string;
  db: Queryable;
  /** The request's idempotency key, if any: a label for the writes; its record, which expires, is what makes them happen once. */
  idempotencyKey: string | undefined;
  /** The request's time, from the app's clock. */
  now: Date;
  /** Group commit for sendMessage: sends stored many to a statement, on the pool. */
  sends: SendCoalescer;
  /** Whether the request's deadline passed: work queued for it (a send waiting for its batch) must not start then. */
  deadlinePassed(): boolean;
  /** Request headers, for the few handlers that read one (streams). */
  header(name: string): string | undefined;
  /** Names conversations whose events the handler wrote (beyond the body's `convoId`), to wake their streams once committed. */
  changed(convoIds: readonly string[]): void;
  /** Says the write announced the body's conversation itself (a send batch): nothing to wake after the answer. */
  announced(): void;
  /** For handlers that answer with something other than JSON (streams). */
  c: Context;
}

/** A method: its input schema and its handler, whose answer type (`Output`) the typed client reads. */
export interface XrpcMethod<Schema extends z.ZodType = z.ZodType, Output = unknown> {
  name: string;
  type: "query" | "procedure";
  input: Schema;
  handler(input: z.output<Schema>, hc: HandlerContext): Promise<Output>;
  /**
   * Optional fast path for a request with an idempotency key: the handler's work, the key's claim and
   * its stored answer in one statement (sendMessage: a batch of sends). It answers `undefined` for
   * anything it does not handle (errors included), and the idempotency middleware then runs `handler`
   * the general way.
   */
  once?(input: z.output<Schema>, hc: HandlerContext, claim: KeyClaim): Promise<OnceOutcome>;
}

export const query = <Schema extends z.ZodType, Output>(
  method: Omit<XrpcMethod<Schema, Output>, "type">,
): XrpcMethod<Schema, Output> & { type: "query" } => ({ ...method, type: "query" });
export const procedure = <Schema extends z.ZodType, Output>(
  method: Omit<XrpcMethod<Schema, Output>, "type">,
): XrpcMethod<Schema, Output> & { type: "procedure" } => ({ ...method, type: "procedure" });

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => (issue.path.length ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
    .join("; ");
}

export function parseInput<Schema extends z.ZodType>(schema: Schema, raw: unknown): z.output<Schema> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw invalidRequest(describeIssues(parsed.error));
  return parsed.data;
}

/**
 * Query-string parameters: repeated keys become arrays where the schema wants an array; any other
 * key given twice is 400, so no layer can read one value while another reads a different one.
 */
function queryParams(c: Context, schema: z.ZodType): Record<string, unknown> {
  const shape = schema instanceof z.ZodObject ? (schema.shape as Record<string, z.ZodType>) : {};
  const raw: Record<string, unknown> = {};
  for (const [key, values] of Object.entries(c.req.queries())) {
    const field = shape[key];
    if (field !== undefined && unwrap(field) instanceof z.ZodArray) raw[key] = values;
    else if (values.length === 1) raw[key] = values[0];
    else throw invalidRequest(`${key.slice(0, 64)} must be given at most once`);
  }
  return raw;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  while (current instanceof z.ZodOptional || current instanceof z.ZodDefault || current instanceof z.ZodPipe) {
    current = current instanceof z.ZodPipe ? (current.in as z.ZodType) : (current.unwrap() as z.ZodType);
  }
  return current;
}

/**
 * The procedure's body text, read once per request (within the body limits, see `readBodyText`);
 * every later call gets the same answer, or the same error.
 */
export function bodyText(c: Context): Promise<string> {
  let text = c.get("bodyText");
  if (!text) {
    const { config } = c.get("app");
    text = readBodyText(c, { maxBytes: config.BODY_LIMIT_BYTES, timeoutMs: config.BODY_READ_TIMEOUT_MS });
    text.catch(() => {});
    c.set("bodyText", text);
  }
  return text;
}

/** The procedure's JSON body (`parseJsonBody`), parsed once per request like `bodyText`. */
export function jsonBody(c: Context): Promise<unknown> {
  let body = c.get("jsonBody");
  if (!body) {
    body = bodyText(c).then(parseJsonBody);
    body.catch(() => {});
    c.set("jsonBody", body);
  }
  return body;
}

/** Answers JSON and remembers the text sent (`answer`), so middleware need not clone and re-read the body. */
export function jsonAnswer(
  c: Context,
  body: unknown,
  status: ContentfulStatusCode = 200,
  headers?: Record<string, string>,
) {
  return jsonText(c, JSON.stringify(body), status, headers);
}

/** Answers JSON text as it is (an answer the database built), remembering it like `jsonAnswer`. */
export function jsonText(
  c: Context,
  text: string,
  status: ContentfulStatusCode = 200,
  headers?: Record<string, string>,
) {
  c.set("answer", text);
  return c.body(text, status, { ...headers, "Content-Type": "application/json" });
}

/** The final handler of an XRPC route: validate, call, answer JSON. */
export function handle(method: XrpcMethod): MiddlewareHandler {
  return async function xrpcHandler(c) {
    const output = await method.handler(await inputOf(c, method), handlerContext(c));
    return output instanceof Response ? output : jsonAnswer(c, output);
  };
}

/** The method's `once` path, as the idempotency middleware calls it; client errors fall back to the general path. */
export function oncePath(method: XrpcMethod): ((c: Context, claim: KeyClaim) => Promise<OnceOutcome>) | undefined {
  const once = method.once;
  if (!once) return undefined;
  return async (c, claim) => {
    try {
      return await once(await inputOf(c, method), handlerContext(c), claim);
    } catch (error) {
      if (error instanceof XrpcError && error.status < 500) return undefined;
      throw error;
    }
  };
}

async function inputOf(c: Context, method: XrpcMethod): Promise<unknown> {
  const raw = method.type === "query" ? queryParams(c, method.input) : await jsonBody(c);
  return parseInput(method.input, raw);
}

function handlerContext(c: Context): HandlerContext {
  const app = c.get("app");
  return {
    app,
    caller: c.get("caller"),
    db: c.get("db"),
    idempotencyKey: c.get("idempotencyKey"),
    now: app.clock.now(),
    sends: c.get("sends"),
    deadlinePassed: () => c.get("deadlinePassed")?.() ?? false,
    header: (name) => c.req.header(name),
    changed: (convoIds) => c.set("changedConvos", [...(c.get("changedConvos") ?? []), ...convoIds]),
    announced: () => c.set("announced", true),
    c,
  };
}
