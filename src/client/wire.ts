/** JSON on the wire: bytes as `{"$bytes": base64}`, query strings with repeated keys for arrays. No Node APIs. */

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  // In chunks: String.fromCharCode takes its bytes as arguments, and arguments are bounded.
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  // Indexed: Uint8Array.from with a map function walks an iterator and calls back per byte, many times slower.
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The request body: every Uint8Array becomes `{"$bytes": ...}`. */
export function toWire(value: unknown): unknown {
  if (value instanceof Uint8Array) return { $bytes: encodeBase64(value) };
  if (Array.isArray(value)) return value.map(toWire);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, field]) => [key, toWire(field)]));
  }
  return value;
}

/** An answer: every `{"$bytes": ...}` object becomes a Uint8Array. */
export function fromWire(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromWire);
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    const [only] = entries;
    if (entries.length === 1 && only?.[0] === "$bytes" && typeof only[1] === "string") return decodeBase64(only[1]);
    return Object.fromEntries(entries.map(([key, field]) => [key, fromWire(field)]));
  }
  return value;
}

/** Query parameters: undefined left out, arrays as repeated keys (`dids=a&dids=b`). */
export function queryString(input: object): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(input)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined) params.append(key, String(item));
    }
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}
