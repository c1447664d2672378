import { z } from "zod";
import { bytesOut } from "../bytes.js";
import * as schemas from "../schemas.js";
import { requireDevice } from "../services/actingDevice.js";
import { requireActiveMember } from "../services/membership.js";
import { fetchWelcome } from "../services/welcomes.js";
import { query } from "../xrpc.js";
import { welcomeTimes } from "./welcomeTimes.js";

export default query({
  name: "getWelcome",
  input: z.object({ convoId: schemas.convoId, deviceId: schemas.deviceId.optional() }),
  async handler(input, { app, caller, db, now }) {
    const deviceId = await requireDevice(db, caller, input.deviceId, now);
    await requireActiveMember(db, input.convoId, caller);
    const welcome = await fetchWelcome(db, input.convoId, { did: caller, deviceId }, welcomeTimes(app.config, now));
    return { convoId: input.convoId, welcome: bytesOut(welcome) };
  },
});
