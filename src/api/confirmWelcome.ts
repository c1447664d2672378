import { z } from "zod";
import * as schemas from "../schemas.js";
import { requireDevice } from "../services/actingDevice.js";
import { requireActiveMember } from "../services/membership.js";
import { confirmWelcome } from "../services/welcomes.js";
import { procedure } from "../xrpc.js";
import { welcomeTimes } from "./welcomeTimes.js";

export default procedure({
  name: "confirmWelcome",
  input: z.object({
    convoId: schemas.convoId,
    success: z.boolean(),
    errorDetails: z.string().max(1024).optional(),
    deviceId: schemas.deviceId.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, { app, caller, db, now }) {
    const deviceId = await requireDevice(db, caller, input.deviceId, now);
    await requireActiveMember(db, input.convoId, caller);
    const outcome = { success: input.success, errorDetails: input.errorDetails };
    return confirmWelcome(db, input.convoId, { did: caller, deviceId }, outcome, welcomeTimes(app.config, now));
  },
});
