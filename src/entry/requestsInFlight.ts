import type { Fetch } from "./answerAfterReads.js";

/**
 * The requests whose handling has not finished, and when none is left. Node's `server.close()` waits for open
 * connections only: a request whose client went away goes on (its batch, its transaction), and closing the pool
 * under it failed it halfway, with an error in the log, on every shutdown under load.
 *
 * @example
 * const inFlight = new RequestsInFlight();
 * serve({ fetch: inFlight.track(app.fetch) });
 * server.close(async () => { await inFlight.settled(); await db.close(); });
 */
export class RequestsInFlight {
  private count = 0;
  private waiting: (() => void)[] = [];

  /** `fetch`, counted while its answer is being made. */
  track(fetch: Fetch): Fetch {
    return async (request, env) => {
      this.count++;
      try {
        return await fetch(request, env);
      } finally {
        if (--this.count === 0) for (const settle of this.waiting.splice(0)) settle();
      }
    };
  }

  /** Resolves once no request is in flight. */
  settled(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((settle) => this.waiting.push(settle));
  }
}
