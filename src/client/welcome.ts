import type { Client } from "./index.js";
import type { Input } from "./types.js";

export type WelcomeInput = Input<"getWelcome">;

/**
 * The Welcome two-phase flow: fetch it, let `process` join the group with it, then confirm. A process that
 * throws is confirmed as failed (with its message) and the error rethrown. An app that crashed between fetch and
 * confirm just calls this again: within the grace period the server hands out the same welcome.
 */
export async function acceptWelcome<T>(
  client: Client,
  input: WelcomeInput,
  process: (welcome: Uint8Array) => Promise<T> | T,
): Promise<T> {
  const { data } = await client.getWelcome(input);
  let joined: T;
  try {
    joined = await process(data.welcome);
  } catch (error) {
    const errorDetails = String(error instanceof Error ? error.message : error).slice(0, 1024);
    await client.confirmWelcome({ ...input, success: false, errorDetails });
    throw error;
  }
  await client.confirmWelcome({ ...input, success: true });
  return joined;
}
