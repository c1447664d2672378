import { z } from "zod";
import { invalidRequest } from "../errors.js";
import * as schemas from "../schemas.js";
import { requireActiveMember } from "../services/membership.js";
import { listCommits } from "../services/messages.js";
import { query } from "../xrpc.js";

const MAX_COMMITS = 1000;

export default query({
  name: "getCommits",
  input: z.object({ convoId: schemas.convoId, fromEpoch: schemas.queryEpoch, toEpoch: schemas.queryEpoch.optional() }),
  async handler(input, { caller, db }) {
    if (input.toEpoch !== undefined && input.toEpoch < input.fromEpoch) throw invalidRequest("toEpoch is before fromEpoch");
    await requireActiveMember(db, input.convoId, caller);
    const commits = await listCommits(db, input.convoId, input.fromEpoch, input.toEpoch, MAX_COMMITS);
    return { convoId: input.convoId, commits };
  },
});
