import type { Context, MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import type { AppContext } from "./context.js";
import type { Queryable } from "./db/driver.js";
import { invalidRequest } from "./errors.js";

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
    /** The request's idempotency key, when it has one (set by the idempotency middleware). */
    idempotencyKey: string | undefined;
  }
}

export const NSID_PREFIX = "blue.catbird.mls.";

/** What a handler gets besides its input. */
export interface HandlerContext {
  app: AppContext;
  caller: string;
  db: Queryable;
  /** The request's idempotency key, if any: handlers may store it as a backstop unique key. */
  idempotencyKey: string | undefined;
  /** The request's time, from the app's clock. */
  now: Date;
  /** Request headers, for the few handlers that read one (streams). */
  header(name: string): string | undefined;
  /** For handlers that answer with something other than JSON (streams). */
  c: Context;
}

export interface XrpcMethod<Schema extends z.ZodType = z.ZodType> {
  name: string;
  type: "query" | "procedure";
  input: Schema;
  handler(input: z.output<Schema>, hc: HandlerContext): Promise<unknown>;
}

export const query = <Schema extends z.ZodType>(method: Omit<XrpcMethod<Schema>, "type">): XrpcMethod<Schema> => ({
  ...method,
  type: "query",
});
export const procedure = <Schema extends z.ZodType>(method: Omit<XrpcMethod<Schema>, "type">): XrpcMethod<Schema> => ({
  ...method,
  type: "procedure",
});

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

/** Query-string parameters: repeated keys become arrays where the schema wants an array. */
function queryParams(c: Context, schema: z.ZodType): Record<string, unknown> {
  const shape = schema instanceof z.ZodObject ? (schema.shape as Record<string, z.ZodType>) : {};
  const raw: Record<string, unknown> = {};
  for (const [key, values] of Object.entries(c.req.queries())) {
    const field = shape[key];
    const wantsArray = field !== undefined && unwrap(field) instanceof z.ZodArray;
    raw[key] = wantsArray ? values : values[values.length - 1];
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

/** The procedure's JSON body, parsed once (Hono caches it for the idempotency middleware). */
export async function jsonBody(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    throw invalidRequest("request body must be JSON");
  }
}

/** Answers JSON and remembers the text sent (`answer`), so middleware need not clone and re-read the body. */
export function jsonAnswer(
  c: Context,
  body: unknown,
  status: ContentfulStatusCode = 200,
  headers?: Record<string, string>,
) {
  const text = JSON.stringify(body);
  c.set("answer", text);
  return c.body(text, status, { ...headers, "Content-Type": "application/json" });
}

/** The final handler of an XRPC route: validate, call, answer JSON. */
export function handle(method: XrpcMethod): MiddlewareHandler {
  return async function xrpcHandler(c) {
    const raw = method.type === "query" ? queryParams(c, method.input) : await jsonBody(c);
    const input = parseInput(method.input, raw);
    const app = c.get("app");
    const output = await method.handler(input, {
      app,
      caller: c.get("caller"),
      db: c.get("db"),
      idempotencyKey: c.get("idempotencyKey"),
      now: app.clock.now(),
      header: (name) => c.req.header(name),
      c,
    });
    return output instanceof Response ? output : jsonAnswer(c, output);
  };
}
