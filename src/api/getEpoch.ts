import { z } from "zod";
import * as schemas from "../schemas.js";
import { requireActiveMember } from "../services/membership.js";
import { query } from "../xrpc.js";

export default query({
  name: "getEpoch",
  input: z.object({ convoId: schemas.convoId }),
  async handler(input, { caller, db }) {
    const convo = await requireActiveMember(db, input.convoId, caller);
    return { convoId: input.convoId, currentEpoch: convo.epoch };
  },
});
