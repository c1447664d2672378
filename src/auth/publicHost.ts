import ipaddr from "ipaddr.js";

/** Names that never lead to the public internet, whatever DNS says. */
const LOCAL_SUFFIXES = [".localhost", ".local", ".internal", ".home.arpa", ".lan"];

/**
 * Whether a URL hostname (as `new URL(...).hostname` gives it) may be fetched for a did:web document:
 * an IP literal must be global unicast (not private, loopback, link-local, unique-local, mapped,
 * multicast or reserved), and a name must have a dot and not be a local-only name.
 *
 * Names are not resolved here (that is not portable across runtimes), so a public name that points at
 * a private address is caught only by the runtime's own network policy (Workers cannot reach one).
 */
export function isPublicHost(hostname: string): boolean {
  const host = hostname
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1")
    .replace(/\.$/, "");
  if (ipaddr.isValid(host)) return ipaddr.parse(host).range() === "unicast";
  if (host === "localhost" || !host.includes(".")) return false;
  return !LOCAL_SUFFIXES.some((suffix) => host.endsWith(suffix));
}
