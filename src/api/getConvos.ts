import { z } from "zod";
import * as schemas from "../schemas.js";
import { listConvos } from "../services/conversations.js";
import { query } from "../xrpc.js";

export default query({
  name: "getConvos",
  input: z.object({ limit: schemas.limit, cursor: schemas.cursor.optional() }),
  handler: (input, { caller, db }) => listConvos(db, caller, input.limit, input.cursor),
});
