import { invalidRequest } from "../errors.js";
import { readWelcomeCipherSuite } from "../mls/welcome.js";
import type { WelcomeInput } from "../services/welcomes.js";

/** The optional `welcomeMessage` of createConvo/addMembers: exactly one MLSMessage with wire format mls_welcome. */
export function welcomeInput(bytes: Uint8Array | undefined): WelcomeInput | undefined {
  if (!bytes) return undefined;
  const cipherSuite = readWelcomeCipherSuite(bytes);
  if (cipherSuite === undefined) {
    throw invalidRequest("welcomeMessage must be exactly one MLSMessage with wire format mls_welcome");
  }
  return { bytes, cipherSuite };
}
