import { z } from "zod";
import { invalidRequest } from "../errors.js";
import * as schemas from "../schemas.js";
import { messagePage } from "../services/messagePage.js";
import { jsonText, query } from "../xrpc.js";

const seq = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export default query({
  name: "getMessages",
  input: z.object({
    convoId: schemas.convoId,
    sinceSeq: seq.optional(),
    sinceMessage: z.string().min(1).max(128).optional(),
    /** The `cursor` of the previous page (the last seq it held). */
    cursor: schemas.seqCursor.optional(),
    limit: schemas.limit,
  }),
  async handler(input, { app, caller, db, c }) {
    const starts = [input.sinceSeq, input.sinceMessage, input.cursor].filter((value) => value !== undefined);
    if (starts.length > 1) throw invalidRequest("give at most one of sinceSeq, sinceMessage and cursor");
    const page = await messagePage(db, {
      convoId: input.convoId,
      reader: caller,
      after:
        input.sinceMessage !== undefined
          ? { sinceMessage: input.sinceMessage }
          : Number(input.cursor ?? input.sinceSeq ?? 0),
      limit: input.limit,
      maxBytes: app.config.MAX_PAGE_BYTES,
    });
    // The database built the answer's JSON: it goes out as it came.
    return jsonText(c, page);
  },
});
