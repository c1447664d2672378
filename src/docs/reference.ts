import type { XrpcMethod } from "../xrpc.js";
import { openApiDocument, type OpenApiDocument } from "./openapi.js";
import { docsPage } from "./page.js";

/**
 * The API reference of one app: the OpenAPI document and the HTML page, each built on its first
 * request and then kept (both depend only on the methods).
 */
export function apiReference(methods: readonly XrpcMethod[]) {
  let document: OpenApiDocument | undefined;
  let page: string | undefined;
  const openapi = () => (document ??= openApiDocument(methods));
  return { openapi, html: () => (page ??= docsPage(openapi())) };
}
