/**
 * Prints an HS256 development token for a DID: `npm run token -- did:plc:alice [ttlSeconds]`.
 * Uses the same secret as the server (`DEV_JWT_SECRET`, or the one generated under the data directory).
 */
import { SignJWT } from "jose";
import { did } from "../src/schemas.js";
import { devSecret } from "../src/entry/dev-secret.js";

const [subject, ttl = "3600"] = process.argv.slice(2);
if (!subject || !did.safeParse(subject).success) {
  console.error("usage: npm run token -- did:plc:alice [ttlSeconds]");
  process.exit(2);
}
const secret = await devSecret(process.env);
if (!secret) {
  console.error(
    "development tokens are off (NODE_ENV=production, DEV_TOKENS=off, or SERVICE_DID without ALLOW_DEV_TOKENS) and DEV_JWT_SECRET is not set",
  );
  process.exit(2);
}
const token = await new SignJWT({})
  .setProtectedHeader({ alg: "HS256", typ: "JWT" })
  .setIssuer(subject)
  .setIssuedAt()
  .setExpirationTime(`${Number(ttl)}s`)
  .sign(new TextEncoder().encode(secret));
console.log(token);
