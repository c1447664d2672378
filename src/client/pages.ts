import { ProtocolError } from "./errors.js";
import type { Client } from "./index.js";
import type { Input, Output } from "./types.js";

type Message = Output<"getMessages">["messages"][number];

/** Every message of a conversation from `sinceSeq` (or `sinceMessage`) on, in seq order, page after page to the end. */
export async function* allMessages(
  client: Client,
  input: Omit<Input<"getMessages">, "cursor">,
  signal?: AbortSignal,
): AsyncGenerator<Message> {
  let page = (await client.getMessages(input, { signal })).data;
  yield* page.messages;
  const seen = new Set<string>();
  while (page.cursor !== undefined) {
    // A cursor that comes back (the same, or a cycle of them) would loop forever over the same pages.
    if (seen.has(page.cursor)) throw new ProtocolError(`getMessages answered cursor ${page.cursor} again`);
    seen.add(page.cursor);
    const next = { convoId: input.convoId, cursor: page.cursor, limit: input.limit };
    page = (await client.getMessages(next, { signal })).data;
    yield* page.messages;
  }
}
