import { idempotencyKey } from "../schemas.js";
import { NSID_PREFIX, type XrpcMethod } from "../xrpc.js";
import { queryParameters, toJsonSchema, type JsonSchema } from "./jsonSchema.js";
import { COMMON_ERRORS, ERROR_STATUS, methodDocs, PROCEDURE_ERRORS, type ErrorName } from "./methodDocs.js";

/** The parts of an OpenAPI 3.1 operation this server describes (and the HTML page renders). */
export interface Operation {
  operationId: string;
  summary?: string;
  description: string;
  tags: string[];
  security: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, Response>;
}
export interface Parameter {
  name: string;
  in: "query" | "header";
  required: boolean;
  description?: string;
  schema: JsonSchema;
  style?: "form";
  explode?: boolean;
}
export interface Response {
  description: string;
  content?: Record<string, { schema: JsonSchema }>;
}
export interface OpenApiDocument {
  openapi: "3.1.0";
  info: { title: string; version: string; description: string };
  paths: Record<string, Partial<Record<"get" | "post", Operation>>>;
  components: { securitySchemes: Record<string, JsonSchema> };
}

const JSON_TYPE = "application/json";
const BEARER = [{ bearer: [] }];

/** OpenAPI 3.1 for every XRPC method, built from the zod schemas the handlers validate with. */
export function openApiDocument(methods: readonly XrpcMethod[]): OpenApiDocument {
  const paths: OpenApiDocument["paths"] = {};
  for (const method of methods) {
    paths[`/xrpc/${NSID_PREFIX}${method.name}`] = { [method.type === "query" ? "get" : "post"]: operation(method) };
  }
  Object.assign(paths, plainRoutes());
  return {
    openapi: "3.1.0",
    info: {
      title: "MLS delivery service",
      version: "1.0.0",
      description:
        "XRPC methods `blue.catbird.mls.*`: queries are GET with query-string parameters (repeat a parameter for arrays), procedures are POST with a JSON body. Every error is JSON `{error, message}`.",
    },
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "The caller is the token's `iss` DID.",
        },
      },
    },
  };
}

function operation(method: XrpcMethod): Operation {
  const doc = methodDocs[method.name];
  const isQuery = method.type === "query";
  const op: Operation = {
    operationId: method.name,
    description: doc?.description ?? "",
    tags: [isQuery ? "queries" : "procedures"],
    security: BEARER,
    responses: { "200": success(doc?.output) },
  };
  if (isQuery) {
    op.parameters = queryParameters(method.input).map((param) =>
      param.schema.type === "array"
        ? { in: "query", ...param, style: "form", explode: true }
        : { in: "query", ...param },
    );
  } else {
    op.requestBody = { required: true, content: { [JSON_TYPE]: { schema: toJsonSchema(method.input, "input") } } };
    op.parameters = [
      {
        name: "Idempotency-Key",
        in: "header",
        required: false,
        description: "Exactly-once key, scoped to (caller, method, key); the same as the body's `idempotencyKey`",
        schema: toJsonSchema(idempotencyKey, "input"),
      },
    ];
  }
  const errors = [...COMMON_ERRORS, ...(isQuery ? [] : PROCEDURE_ERRORS), ...(doc?.errors ?? [])];
  Object.assign(op.responses, errorResponses(errors));
  return op;
}

function success(output: (typeof methodDocs)[string]["output"] | undefined): Response {
  if (!output) return { description: "OK (not documented)" };
  if ("encoding" in output) {
    return { description: output.description, content: { [output.encoding]: { schema: { type: "string" } } } };
  }
  return { description: "OK", content: { [JSON_TYPE]: { schema: toJsonSchema(output, "output") } } };
}

/** One response per status, listing the error names that status carries. */
function errorResponses(names: readonly ErrorName[]): Record<string, Response> {
  const byStatus = new Map<number, ErrorName[]>();
  for (const name of new Set(names)) {
    const status = ERROR_STATUS[name];
    byStatus.set(status, [...(byStatus.get(status) ?? []), name]);
  }
  const responses: Record<string, Response> = {};
  for (const [status, list] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: list.join(", "),
      content: {
        [JSON_TYPE]: {
          schema: {
            type: "object",
            required: ["error", "message"],
            properties: { error: { type: "string", enum: list }, message: { type: "string" } },
          },
        },
      },
    };
  }
  return responses;
}

function plainRoute(operationId: string, description: string, contentType: string): { get: Operation } {
  return {
    get: {
      operationId,
      description,
      tags: ["operations"],
      security: [],
      responses: { "200": { description: "OK", content: { [contentType]: { schema: { type: "string" } } } } },
    },
  };
}

function plainRoutes(): OpenApiDocument["paths"] {
  return {
    "/health": plainRoute("health", "The process is up.", JSON_TYPE),
    "/health/ready": plainRoute("ready", "The database is reachable (503 NotReady otherwise).", JSON_TYPE),
    "/metrics": plainRoute("metrics", "Prometheus metrics (text exposition format).", "text/plain"),
    "/openapi.json": plainRoute("openapi", "This API as an OpenAPI 3.1 document.", JSON_TYPE),
    "/docs": plainRoute("docs", "This API as a human-readable page.", "text/html"),
  };
}
