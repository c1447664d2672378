import { z } from "zod";
import * as schemas from "../schemas.js";
import { listConvos } from "../services/conversations.js";
import { query } from "../xrpc.js";

export default query({
  name: "getConvos",
  input: z.object({ limit: schemas.limit, cursor: schemas.cursor.optional() }),
  handler: (input, { app, caller, db }) =>
    listConvos(db, caller, { limit: input.limit, cursor: input.cursor, maxBytes: app.config.MAX_PAGE_BYTES }),
});
