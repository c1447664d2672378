import { decodeMlsMessage } from "ts-mls/message.js";
import { decodeExactly } from "./decode.js";
import { cipherSuiteName } from "./keyPackage.js";

/**
 * The cipher suite of a Welcome (RFC 9420 §12.4.3.1) framed as an MLSMessage with wire format mls_welcome, in the
 * RFC 9420 name form `readKeyPackage` uses. Undefined for anything else, including trailing bytes; never throws.
 */
export function readWelcomeCipherSuite(bytes: Uint8Array): string | undefined {
  const message = decodeExactly(decodeMlsMessage, bytes);
  return message?.wireformat === "mls_welcome" ? cipherSuiteName(message.welcome.cipherSuite) : undefined;
}
