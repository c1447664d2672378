/** The bench's requests as wrk builds them (Lua for `load`): sends, their replays and reads. */
import { luaString, luaStrings, type LoadOptions } from "./load.js";

const SEND_PATH = "/xrpc/blue.catbird.mls.sendMessage";

/** Every bench send's ciphertext: 160 bytes, as scripts/bench/sql.ts's statements store. */
export const CIPHERTEXT = Buffer.alloc(160, 7).toString("base64");

export interface SendPlan {
  /** The conversations sent to, each with its member's token. */
  convos: readonly { id: string; token: string }[];
  /** Keys are `<keyPrefix><n>`: a run's own. */
  keyPrefix: string;
  /** Replays: requests `first` .. `first + count - 1` of the run with the same plan, again and again, bodies and keys alike. */
  replay?: { first: number; count: number };
}

/** Sends to `convos` under keys of their own: `<label>-<uuid>-<n>`. */
export const sendPlan = (label: string, convos: SendPlan["convos"]): SendPlan => ({
  convos,
  keyPrefix: `${label}-${crypto.randomUUID()}-`,
});

/**
 * Keyed sends: request n goes to conversation (n * 7919) mod count (a prime: every conversation in turn, spread
 * out), with key `<keyPrefix><n>`, so a replay run rebuilds any request of the first run exactly.
 */
export function sendRequests({ convos, keyPrefix, replay }: SendPlan): Pick<LoadOptions, "setup" | "request"> {
  return {
    setup: `local convos = ${luaStrings(convos.map((convo) => convo.id))}
local tokens = ${luaStrings(convos.map((convo) => `Bearer ${convo.token}`))}
local prefix = ${luaString(keyPrefix)}
local ciphertext = ${luaString(CIPHERTEXT)}`,
    request: `local m = ${replay ? `${replay.first} + (n - 1) % ${replay.count}` : "n"}
  local i = (m * 7919) % #convos + 1
  local body = '{"convoId":"' .. convos[i] .. '","ciphertext":"' .. ciphertext .. '","epoch":0}'
  return wrk.format("POST", ${luaString(SEND_PATH)}, {
    ["Authorization"] = tokens[i], ["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. m }, body)`,
  };
}

/** getMessages pages of 50 from a random place in a conversation of `size` messages. */
export function readRequests(convoId: string, token: string, size: number): Pick<LoadOptions, "setup" | "request"> {
  return {
    setup: `local path = ${luaString(`/xrpc/blue.catbird.mls.getMessages?convoId=${convoId}&limit=50&sinceSeq=`)}
local headers = { ["Authorization"] = ${luaString(`Bearer ${token}`)} }`,
    request: `return wrk.format("GET", path .. math.random(0, ${size - 51}), headers)`,
  };
}
