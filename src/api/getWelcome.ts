import { z } from "zod";
import { bytesOut } from "../bytes.js";
import * as schemas from "../schemas.js";
import { requireActiveMember } from "../services/membership.js";
import { fetchWelcome } from "../services/welcomes.js";
import { query } from "../xrpc.js";
import { welcomeTimes } from "./welcomeTimes.js";

export default query({
  name: "getWelcome",
  input: z.object({ convoId: schemas.convoId }),
  async handler(input, { app, caller, db, now }) {
    await requireActiveMember(db, input.convoId, caller);
    const welcome = await fetchWelcome(db, input.convoId, caller, welcomeTimes(app.config, now));
    return { convoId: input.convoId, welcome: bytesOut(welcome) };
  },
});
