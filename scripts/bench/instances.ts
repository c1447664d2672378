import { load, type LoadOptions, type LoadResult } from "./load.js";

/** What one instance's wrk sends: its own requests (keyed sends must not repeat another instance's keys). */
type Requests = Pick<LoadOptions, "setup" | "request">;

/**
 * One load split over several server instances at once (the same database), as a balancer would spread it:
 * `connections` shared out evenly, one wrk per instance, instance `i` sending `requests(i)`. Throughput and
 * counts add up; the latencies are the worst instance's (a percentile of the whole is not kept by wrk).
 */
export async function loadAcross(
  urls: readonly string[],
  options: Omit<LoadOptions, "url" | "setup" | "request">,
  requests: (instance: number) => Requests,
): Promise<LoadResult> {
  const results = await Promise.all(
    urls.map((url, i) =>
      load({
        ...options,
        ...requests(i),
        url,
        title: `${options.title} (instance ${i + 1})`,
        connections: Math.ceil(options.connections / urls.length),
      }),
    ),
  );
  const sum = (pick: (result: LoadResult) => number) => results.reduce((total, result) => total + pick(result), 0);
  const worst = (pick: (result: LoadResult) => number) => Math.max(...results.map(pick));
  return {
    requestsPerSecond: sum((result) => result.requestsPerSecond),
    requests: sum((result) => result.requests),
    p50Ms: worst((result) => result.p50Ms),
    p99Ms: worst((result) => result.p99Ms),
    non2xx: sum((result) => result.non2xx),
    errors: sum((result) => result.errors),
  };
}
