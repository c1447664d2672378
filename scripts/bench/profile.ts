/**
 * Where a server's CPU went: a V8 `.cpuprofile` (node --cpu-prof) summed by self time per part of the
 * program (our source directories, each package, Node's internals, the garbage collector) and per
 * function, and divided by the requests it served.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { scrapeMetrics, total } from "./metrics.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** CPU time the process was busy (idle left out), in ms. */
  busyMs: number;
  /** Busy CPU time per part of the program, largest first. */
  parts: { part: string; ms: number; share: number }[];
  /** The functions with the most self time. */
  functions: { fn: string; ms: number; share: number }[];
}

/** The part of the program a frame belongs to: `src/<dir>`, a package, `node:internal`, or V8's own `(gc)`. */
function partOf({ functionName, url }: ProfileNode["callFrame"]): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const source = /\/src\/([^/]+)\//.exec(url);
  if (source) return `src/${source[1]}`;
  if (/\/src\/[^/]+$/.test(url)) return "src";
  return url.startsWith("node:") ? "node:internal" : url;
}

/** Sums the main thread's `.cpuprofile` in `dir`: the largest (tsx's loader thread writes one too). */
export async function summarizeProfile(dir: string): Promise<ProfileSummary> {
  const files = (await readdir(dir)).filter((file) => file.endsWith(".cpuprofile"));
  const sized = await Promise.all(files.map(async (file) => ({ file, size: (await stat(join(dir, file))).size })));
  const main = sized.sort((a, b) => b.size - a.size)[0];
  if (!main) throw new Error(`no .cpuprofile in ${dir}`);
  const profile = JSON.parse(await readFile(join(dir, main.file), "utf8")) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parts = new Map<string, number>();
  const functions = new Map<string, number>();
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id)!.callFrame;
    if (frame.functionName === "(idle)") return;
    const us = profile.timeDeltas[i] ?? 0;
    busyUs += us;
    const part = partOf(frame);
    parts.set(part, (parts.get(part) ?? 0) + us);
    const fn = `${frame.functionName || "(anonymous)"} ${part}${frame.url ? `:${frame.lineNumber + 1}` : ""}`;
    functions.set(fn, (functions.get(fn) ?? 0) + us);
  });
  const ranked = <K extends string>(map: Map<string, number>, key: K, limit: number) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(
        ([name, us]) =>
          ({ [key]: name, ms: us / 1000, share: us / busyUs }) as Record<K, string> & { ms: number; share: number },
      );
  return { busyMs: busyUs / 1000, parts: ranked(parts, "part", 20), functions: ranked(functions, "fn", 15) };
}

/** The summary as lines: each part's and top function's share, and the busy CPU per request served. */
export function printProfile(summary: ProfileSummary, requests: number): string[] {
  const pct = (share: number) => `${(share * 100).toFixed(1).padStart(5)}%`;
  return [
    `CPU busy ${(summary.busyMs / 1000).toFixed(1)} s for ${requests} requests: ${((summary.busyMs * 1000) / Math.max(requests, 1)).toFixed(0)} µs per request`,
    "by part:",
    ...summary.parts.map(({ part, share }) => `  ${pct(share)}  ${part}`),
    "top functions (self time):",
    ...summary.functions.map(({ fn, share }) => `  ${pct(share)}  ${fn}`),
  ];
}

/** Every request the server counted (`http_requests_total` on its /metrics, `token` its METRICS_TOKEN). */
export const requestsServed = async (serverUrl: string, token: string): Promise<number> =>
  total(await scrapeMetrics(serverUrl, token), "http_requests_total");
