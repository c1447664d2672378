import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { methods } from "../../src/api/index.js";
import { queryParameters, toJsonSchema, type JsonSchema } from "../../src/docs/jsonSchema.js";
import { methodDocs } from "../../src/docs/methodDocs.js";
import { NSID_PREFIX } from "../../src/xrpc.js";

/**
 * The lexicon documents in src/lexicons must say what the zod schemas enforce: the same methods,
 * the same type, the same parameter/input/output properties with the same types, formats and
 * required sets. Constraints the lexicon language cannot express (patterns) are not compared.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Lexicon = { lexicon: number; id: string; description?: string; defs: Record<string, any> };
/** What both sides must agree on. */
type Shape = { type: string; format?: string; items?: Shape; required?: string[]; properties?: Record<string, Shape> };

const DEFS = `${NSID_PREFIX}defs`;
const dir = new URL("../../src/lexicons/", import.meta.url);
const files = readdirSync(dir).filter((file) => file.endsWith(".json"));
const lexicons = new Map<string, Lexicon>(
  files.map((file) => {
    const doc = JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Lexicon;
    return [doc.id, doc];
  }),
);

const objectShape = (properties: Record<string, Shape>, required: readonly string[] = []): Shape => ({
  type: "object",
  required: [...required].sort(),
  properties,
});
const mapValues = <T>(record: Record<string, T>, fn: (value: T) => Shape) =>
  Object.fromEntries(Object.entries(record).map(([key, value]) => [key, fn(value)]));

function fromJsonSchema(schema: JsonSchema): Shape {
  if (schema["x-lexicon-type"] === "bytes") return { type: "bytes" };
  switch (schema.type) {
    case "string": {
      const format = schema.format === "date-time" ? "datetime" : (schema.format as string | undefined);
      return format === "did" || format === "datetime" ? { type: "string", format } : { type: "string" };
    }
    case "integer":
    case "boolean":
      return { type: schema.type };
    case "array":
      return { type: "array", items: fromJsonSchema(schema.items as JsonSchema) };
    case "object":
      return objectShape(
        mapValues((schema.properties ?? {}) as Record<string, JsonSchema>, fromJsonSchema),
        (schema.required ?? []) as string[],
      );
  }
  throw new Error(`no lexicon type for ${JSON.stringify(schema)}`);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function fromLexicon(node: any): Shape {
  switch (node.type) {
    case "ref": {
      const [id, name = "main"] = String(node.ref).split("#");
      const target = lexicons.get(id!)?.defs[name];
      if (!target) throw new Error(`unresolved ref ${node.ref}`);
      return fromLexicon(target);
    }
    case "string":
      return node.format ? { type: "string", format: node.format } : { type: "string" };
    case "integer":
    case "boolean":
    case "bytes":
      return { type: node.type };
    case "array":
      return { type: "array", items: fromLexicon(node.items) };
    case "object":
    case "params":
      return objectShape(mapValues(node.properties ?? {}, fromLexicon), node.required);
  }
  throw new Error(`unknown lexicon type ${node.type}`);
}

describe("lexicons in src/lexicons", () => {
  it("exist for exactly the methods the server implements, plus the shared defs", () => {
    const methodIds = methods.map((method) => `${NSID_PREFIX}${method.name}`).sort();
    expect([...lexicons.keys()].filter((id) => id !== DEFS).sort()).toEqual(methodIds);
    expect(lexicons.has(DEFS)).toBe(true);
    for (const file of files) {
      const doc = JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Lexicon;
      expect(doc.lexicon).toBe(1);
      expect(file).toBe(`${doc.id}.json`);
    }
  });

  it.each(methods.map((method) => [method.name, method] as const))("%s agrees with its zod schemas", (name, method) => {
    const main = lexicons.get(`${NSID_PREFIX}${name}`)?.defs.main;
    expect(main?.type).toBe(method.type);

    if (method.type === "query") {
      const parameters = queryParameters(method.input);
      const expected = objectShape(
        Object.fromEntries(parameters.map((param) => [param.name, fromJsonSchema(param.schema)])),
        parameters.filter((param) => param.required).map((param) => param.name),
      );
      expect(fromLexicon(main.parameters ?? { type: "params" })).toEqual(expected);
      expect(main.input).toBeUndefined();
    } else {
      expect(main.input.encoding).toBe("application/json");
      expect(fromLexicon(main.input.schema)).toEqual(fromJsonSchema(toJsonSchema(method.input, "input")));
      expect(main.parameters).toBeUndefined();
    }

    const doc = methodDocs[name]!;
    if ("encoding" in doc.output) {
      expect(main.output).toMatchObject({ encoding: doc.output.encoding });
    } else {
      expect(main.output.encoding).toBe("application/json");
      expect(fromLexicon(main.output.schema)).toEqual(fromJsonSchema(toJsonSchema(doc.output, "output")));
    }
    expect((main.errors ?? []).map((error: { name: string }) => error.name).sort()).toEqual([...doc.errors].sort());
  });
});
