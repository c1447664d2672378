import { z } from "zod";

/** A JSON Schema (2020-12, which OpenAPI 3.1 uses) as plain data. */
export type JsonSchema = { [keyword: string]: unknown };

const BYTES_IN = 'bytes: a standard base64 string, or {"$bytes": "<base64>"}';
const BYTES_OUT = 'bytes: {"$bytes": "<standard base64>"}';

/**
 * The JSON Schema of a zod schema, with the AT Protocol types marked: DID strings get
 * `format: "did"` and the bytes forms get `x-lexicon-type: "bytes"`. `io` picks the side of
 * transforms: "input" is what a client sends, "output" what a handler sees or returns.
 */
export function toJsonSchema(schema: z.ZodType, io: "input" | "output"): JsonSchema {
  const { $schema: _, ...json } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as JsonSchema;
  return annotate(json);
}

/**
 * The query parameters of a query method: required as the client sees it (defaults make a
 * parameter optional), typed as the handler sees it (a digits-only string parsed to an integer is
 * an integer), unless that side cannot be represented (a bare transform), then as sent.
 */
export function queryParameters(schema: z.ZodType): { name: string; required: boolean; schema: JsonSchema }[] {
  const sent = toJsonSchema(schema, "input");
  const parsed = toJsonSchema(schema, "output");
  const sentProperties = (sent.properties ?? {}) as Record<string, JsonSchema>;
  const parsedProperties = (parsed.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((sent.required ?? []) as string[]);
  return Object.entries(sentProperties).map(([name, asSent]) => {
    const asParsed = parsedProperties[name];
    return {
      name,
      required: required.has(name),
      schema: asParsed && Object.keys(asParsed).length > 0 ? asParsed : asSent,
    };
  });
}

function annotate(node: JsonSchema): JsonSchema {
  if (isWrappedBytes(node)) return { "x-lexicon-type": "bytes", description: BYTES_OUT, ...node };
  if (isBytesInput(node)) return { "x-lexicon-type": "bytes", description: BYTES_IN, ...node };
  const out: JsonSchema = { ...node };
  if (out.type === "string" && typeof out.pattern === "string" && out.pattern.startsWith("^did:")) out.format = "did";
  if (isObject(out.properties)) {
    out.properties = Object.fromEntries(
      Object.entries(out.properties).map(([name, child]) => [name, annotate(child as JsonSchema)]),
    );
  }
  if (isObject(out.items)) out.items = annotate(out.items);
  if (Array.isArray(out.anyOf)) out.anyOf = out.anyOf.map((child) => annotate(child as JsonSchema));
  return out;
}

/** The output form, `{"$bytes": string}`. */
const isWrappedBytes = (node: unknown): boolean =>
  isObject(node) &&
  node.type === "object" &&
  isObject(node.properties) &&
  Object.keys(node.properties).join() === "$bytes";

/** The input forms: a base64 string or the wrapped object. */
function isBytesInput(node: JsonSchema): boolean {
  const anyOf = node.anyOf;
  return (
    Array.isArray(anyOf) &&
    anyOf.length === 2 &&
    anyOf.some((branch) => isObject(branch) && branch.type === "string") &&
    anyOf.some(isWrappedBytes)
  );
}

const isObject = (value: unknown): value is JsonSchema =>
  typeof value === "object" && value !== null && !Array.isArray(value);
