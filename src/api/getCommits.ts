import { z } from "zod";
import { invalidRequest } from "../errors.js";
import * as schemas from "../schemas.js";
import { listCommits } from "../services/messages.js";
import { query } from "../xrpc.js";

export default query({
  name: "getCommits",
  input: z.object({
    convoId: schemas.convoId,
    fromEpoch: schemas.queryEpoch,
    toEpoch: schemas.queryEpoch.optional(),
    /** The `cursor` of the previous page (the last epoch it held). */
    cursor: schemas.seqCursor.optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(1000),
  }),
  async handler(input, { app, caller, db }) {
    if (input.toEpoch !== undefined && input.toEpoch < input.fromEpoch)
      throw invalidRequest("toEpoch is before fromEpoch");
    const afterCursor = input.cursor === undefined ? 0 : Number(input.cursor) + 1;
    // One statement: the membership check (404, 403) and the page.
    const page = await listCommits(db, {
      convoId: input.convoId,
      reader: caller,
      fromEpoch: Math.max(input.fromEpoch, afterCursor),
      toEpoch: input.toEpoch,
      limit: input.limit,
      maxBytes: app.config.MAX_PAGE_BYTES,
    });
    return { convoId: input.convoId, ...page };
  },
});
