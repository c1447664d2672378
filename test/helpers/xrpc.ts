import type { Hono } from "hono";
import { tokenFor } from "./context.js";

export interface XrpcResult {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  headers: Headers;
}

/** Calls an XRPC method as `did`: POST with a JSON body when `body` is given, else GET with `query`. */
export async function xrpc(
  app: Hono,
  did: string | undefined,
  method: string,
  { body, query, headers = {} }: { body?: unknown; query?: Record<string, string | string[]>; headers?: Record<string, string> } = {},
): Promise<XrpcResult> {
  const auth: Record<string, string> = did ? { Authorization: `Bearer ${await tokenFor(did)}` } : {};
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, item);
  }
  const path = `/xrpc/blue.catbird.mls.${method}${search.size ? `?${search}` : ""}`;
  const response = await app.request(
    path,
    body === undefined
      ? { headers: { ...auth, ...headers } }
      : {
          method: "POST",
          headers: { ...auth, "Content-Type": "application/json", ...headers },
          body: typeof body === "string" ? body : JSON.stringify(body),
        },
  );
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed, headers: response.headers };
}
