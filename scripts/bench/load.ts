import autocannon from "autocannon";

export interface LoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

export interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds: number;
  method?: "GET" | "POST";
  /** Builds each request: path, headers and body. Called once per request sent. */
  next: () => { path: string; headers?: Record<string, string>; body?: string };
  title: string;
}

/** Drives the server with autocannon and reports throughput and latency percentiles. */
export async function load(options: LoadOptions): Promise<LoadResult> {
  let instance!: autocannon.Instance;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationSeconds,
        title: options.title,
        requests: [
          {
            method: options.method ?? "GET",
            setupRequest: (request) => {
              const next = options.next();
              return { ...request, path: next.path, headers: { ...request.headers, ...next.headers }, body: next.body };
            },
          },
        ],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
  autocannon.track(instance, {
    renderResultsTable: false,
    renderLatencyTable: false,
    progressBarString: `  ${options.title} [:bar] :percent`,
  });
  const result = await finished;
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}
