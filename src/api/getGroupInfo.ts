import { z } from "zod";
import { bytesOut } from "../bytes.js";
import * as schemas from "../schemas.js";
import { latestGroupInfo } from "../services/roster.js";
import { query } from "../xrpc.js";

export default query({
  name: "getGroupInfo",
  input: z.object({ convoId: schemas.convoId }),
  async handler(input, { caller, db }) {
    const { epoch, groupInfo } = await latestGroupInfo(db, input.convoId, caller);
    return { convoId: input.convoId, epoch, groupInfo: bytesOut(groupInfo) };
  },
});
