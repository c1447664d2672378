import type { CallOptions } from "./call.js";
import { WelcomeConfirmError } from "./errors.js";
import type { Client } from "./index.js";
import type { Input } from "./types.js";

export type WelcomeInput = Input<"getWelcome">;
/** For each of its calls (one idempotency key would not fit three calls). */
export type WelcomeOptions = Omit<CallOptions, "idempotencyKey">;

/**
 * The Welcome two-phase flow: fetch it, let `process` join the group with it, then confirm. A process that
 * throws is confirmed as failed (with its message) and its error rethrown (a confirm that failed too is its
 * `cause`). A join whose confirm fails (410 WelcomeGone once the grace period has passed) still stands: that is a
 * WelcomeConfirmError carrying `joined`. An app that crashed between fetch and confirm just calls this again:
 * within the grace period the server hands out the same welcome.
 */
export async function acceptWelcome<T>(
  client: Client,
  input: WelcomeInput,
  process: (welcome: Uint8Array) => Promise<T> | T,
  options: WelcomeOptions = {},
): Promise<T> {
  const { data } = await client.getWelcome(input, options);
  let joined: T;
  try {
    joined = await process(data.welcome);
  } catch (error) {
    const errorDetails = String(error instanceof Error ? error.message : error).slice(0, 1024);
    try {
      await client.confirmWelcome({ ...input, success: false, errorDetails }, options);
    } catch (confirmFailure) {
      if (error instanceof Error && error.cause === undefined) error.cause = confirmFailure;
    }
    throw error;
  }
  try {
    await client.confirmWelcome({ ...input, success: true }, options);
  } catch (error) {
    throw new WelcomeConfirmError(joined, error);
  }
  return joined;
}
