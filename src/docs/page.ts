import type { JsonSchema } from "./jsonSchema.js";
import type { OpenApiDocument, Operation, Parameter } from "./openapi.js";

/**
 * The API reference as one self-contained HTML page (inline CSS, no scripts, nothing fetched),
 * rendered from the OpenAPI document so the two can never disagree.
 */
export function docsPage(doc: OpenApiDocument): string {
  const operations = Object.entries(doc.paths).flatMap(([path, verbs]) =>
    Object.entries(verbs).map(([verb, op]) => ({ path, verb: verb.toUpperCase(), op: op as Operation })),
  );
  const byTag = (tag: string) => operations.filter(({ op }) => op.tags.includes(tag));
  const groups = [
    { title: "Procedures (POST, JSON body)", items: byTag("procedures") },
    { title: "Queries (GET, query string)", items: byTag("queries") },
    { title: "Operations (no token)", items: byTag("operations") },
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(doc.info.title)} — API reference</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${escape(doc.info.title)}</h1>
<p>${inline(doc.info.description)}</p>
<p>Authentication: <code>Authorization: Bearer &lt;JWT&gt;</code>; the caller is the token's <code>iss</code> DID.
Bytes are standard base64 (inputs also accept <code>{"$bytes": "…"}</code>). Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<nav>${groups
    .map(
      (group) =>
        `<div><h2>${escape(group.title)}</h2><ul>${group.items
          .map(({ op, path }) => `<li><a href="#${escape(op.operationId)}">${escape(shortName(path))}</a></li>`)
          .join("")}</ul></div>`,
    )
    .join("")}</nav>
</header>
<main>
${operations.map(({ path, verb, op }) => section(path, verb, op)).join("\n")}
</main>
</body>
</html>
`;
}

function section(path: string, verb: string, op: Operation): string {
  const parts = [
    `<section id="${escape(op.operationId)}">`,
    `<h2><span class="verb ${verb.toLowerCase()}">${verb}</span> <code>${escape(path)}</code></h2>`,
    `<p>${inline(op.description)}</p>`,
  ];
  const query = (op.parameters ?? []).filter((p) => p.in === "query");
  const headers = (op.parameters ?? []).filter((p) => p.in === "header");
  if (query.length) parts.push(`<h3>Parameters (query string)</h3>`, fieldTable(query.flatMap(parameterRows)));
  const body = op.requestBody?.content["application/json"]?.schema;
  if (body) parts.push(`<h3>Input (JSON body)</h3>`, fieldTable(fieldRows(body)));
  if (headers.length) parts.push(`<h3>Headers</h3>`, fieldTable(headers.flatMap(parameterRows)));
  const ok = op.responses["200"];
  const [encoding, content] = Object.entries(ok?.content ?? {})[0] ?? [];
  if (encoding === "application/json" && content?.schema.properties) {
    parts.push(`<h3>Output</h3>`, fieldTable(fieldRows(content.schema), false));
  } else if (encoding) {
    parts.push(`<h3>Output</h3><p><code>${escape(encoding)}</code>${ok ? `: ${inline(ok.description)}` : ""}</p>`);
  }
  const errors = Object.entries(op.responses).filter(([status]) => status !== "200");
  if (errors.length) {
    parts.push(
      `<h3>Errors</h3><table><thead><tr><th>status</th><th>error</th></tr></thead><tbody>${errors
        .map(
          ([status, response]) =>
            `<tr><td>${escape(status)}</td><td>${codes(response.description.split(", "))}</td></tr>`,
        )
        .join("")}</tbody></table>`,
    );
  }
  parts.push(`</section>`);
  return parts.join("\n");
}

interface Row {
  name: string;
  type: string;
  required: boolean;
  notes: string;
}

function parameterRows(param: Parameter): Row[] {
  const row = { name: param.name, type: typeName(param.schema), required: param.required, notes: notes(param.schema) };
  if (param.description) row.notes = [inline(param.description), row.notes].filter(Boolean).join("; ");
  return [row];
}

/** The properties of an object schema, nested objects flattened to `a.b` and `a[].b`. */
function fieldRows(schema: JsonSchema, prefix = ""): Row[] {
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(properties).flatMap(([name, child]) => {
    const path = `${prefix}${name}`;
    const row = { name: path, type: typeName(child), required: required.has(name), notes: notes(child) };
    const items = child.items as JsonSchema | undefined;
    if (child["x-lexicon-type"]) return [row];
    if (child.type === "object") return [row, ...fieldRows(child, `${path}.`)];
    if (child.type === "array" && items?.type === "object" && !items["x-lexicon-type"]) {
      return [row, ...fieldRows(items, `${path}[].`)];
    }
    return [row];
  });
}

function fieldTable(rows: Row[], showRequired = true): string {
  const head = `<tr><th>name</th><th>type</th><th>${showRequired ? "required" : "always"}</th><th>constraints</th></tr>`;
  const body = rows
    .map(
      (row) =>
        `<tr><td><code>${escape(row.name)}</code></td><td>${escape(row.type)}</td><td>${row.required ? "yes" : ""}</td><td>${row.notes}</td></tr>`,
    )
    .join("");
  return `<table><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

function typeName(schema: JsonSchema): string {
  if (schema["x-lexicon-type"]) return String(schema["x-lexicon-type"]);
  if (Array.isArray(schema.enum)) return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  if (schema.type === "array") return `${typeName((schema.items ?? {}) as JsonSchema)}[]`;
  if (schema.type === "string" && schema.format) return `string (${String(schema.format)})`;
  if (typeof schema.type === "string") return schema.type;
  if (Array.isArray(schema.anyOf)) return schema.anyOf.map((branch) => typeName(branch as JsonSchema)).join(" | ");
  return "any";
}

/** Length, range, item count, pattern, default and description, as HTML. */
function notes(schema: JsonSchema): string {
  const out: string[] = [];
  const range = (min: unknown, max: unknown, unit: string) => {
    const low = typeof min === "number" ? min : undefined;
    const high = typeof max === "number" && max < Number.MAX_SAFE_INTEGER ? max : undefined;
    if (low !== undefined && high !== undefined) out.push(`${unit}${low}–${high}`);
    else if (high !== undefined) out.push(`${unit}≤ ${high}`);
    else if (low !== undefined) out.push(`${unit}≥ ${low}`);
  };
  range(schema.minLength, schema.maxLength, "length ");
  range(schema.minimum, schema.maximum, "");
  range(schema.minItems, schema.maxItems, "items ");
  if (typeof schema.pattern === "string" && !schema.format) out.push(`pattern <code>${escape(schema.pattern)}</code>`);
  if (schema.default !== undefined) out.push(`default <code>${escape(JSON.stringify(schema.default))}</code>`);
  if (typeof schema.description === "string") out.push(inline(schema.description));
  const items = schema.items as JsonSchema | undefined;
  if (items && !items["x-lexicon-type"] && items.type !== "object") {
    const each = notes(items);
    if (each) out.push(`each: ${each}`);
  }
  return out.join("; ");
}

const shortName = (path: string) => path.replace(/^\/xrpc\/blue\.catbird\.mls\./, "");
const codes = (names: string[]) => names.map((name) => `<code>${escape(name)}</code>`).join(", ");

/** Escaped text with `backticks` as code. */
function inline(text: string): string {
  return escape(text).replace(/`([^`]+)`/g, "<code>$1</code>");
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

const STYLE = `
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header,main{max-width:980px;margin:0 auto;padding:0 20px}
header{padding-top:24px}
nav{display:flex;gap:32px;flex-wrap:wrap}
nav h2{font-size:14px;text-transform:uppercase;letter-spacing:.04em;color:#555}
nav ul{margin:0;padding-left:18px}
section{background:#fff;border:1px solid #e2e2e2;border-radius:8px;padding:4px 20px 16px;margin:20px 0}
section h2{font-size:18px}
h3{font-size:14px;margin:16px 0 6px;color:#444}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f2f2f2;padding:1px 4px;border-radius:3px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;border-bottom:1px solid #eee;padding:4px 8px;vertical-align:top}
th{color:#666;font-weight:600}
.verb{font:600 12px ui-monospace,monospace;padding:2px 6px;border-radius:4px;color:#fff;vertical-align:middle}
.verb.get{background:#2b7a3d}.verb.post{background:#1f5fbf}
`;
