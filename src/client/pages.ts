import { ProtocolError } from "./errors.js";
import type { Client } from "./index.js";
import type { Input, Output } from "./types.js";

type Message = Output<"getMessages">["messages"][number];

/**
 * Every message of a conversation from `sinceSeq` (or `sinceMessage`) on, in seq order, page after page to the end.
 * A server that does not move forward (a message at or before one already yielded or `sinceSeq`, or a page with a
 * cursor but no message) is a ProtocolError: it would otherwise loop for ever over the same pages, or hand back
 * messages the caller said it holds.
 */
export async function* allMessages(
  client: Client,
  input: Omit<Input<"getMessages">, "cursor">,
  signal?: AbortSignal,
): AsyncGenerator<Message> {
  // Cursors are the server's to read; progress is judged by seq (pages come in ascending seq, from 1), so only the
  // last one is kept.
  let last = input.sinceSeq ?? 0;
  let page = (await client.getMessages(input, { signal })).data;
  for (;;) {
    // The server's JSON, whatever it is: null is no page either.
    if (!Array.isArray(page?.messages)) throw new ProtocolError("getMessages answered a page without messages");
    for (const message of page.messages) {
      // Not a number (missing, say) compares false with anything: it must be a seq to count as progress.
      if (!Number.isSafeInteger(message?.seq) || message.seq <= last) {
        throw new ProtocolError(`getMessages answered seq ${message?.seq} after ${last}`);
      }
      last = message.seq;
      yield message;
    }
    if (page.cursor === undefined) return;
    // A page holds at least one message: an empty one with a cursor moves nowhere.
    if (page.messages.length === 0) throw new ProtocolError(`getMessages page with cursor ${page.cursor} is empty`);
    const next = { convoId: input.convoId, cursor: page.cursor, limit: input.limit };
    page = (await client.getMessages(next, { signal })).data;
  }
}
