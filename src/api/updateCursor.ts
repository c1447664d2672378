import { z } from "zod";
import * as schemas from "../schemas.js";
import { requireDevice } from "../services/actingDevice.js";
import { requireActiveMember } from "../services/membership.js";
import { updateCursor } from "../services/messages.js";
import { procedure } from "../xrpc.js";

export default procedure({
  name: "updateCursor",
  input: z.object({
    convoId: schemas.convoId,
    cursor: z.string().min(1).max(256),
    deviceId: schemas.deviceId.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, { caller, db, now }) {
    const deviceId = await requireDevice(db, caller, input.deviceId, now);
    await requireActiveMember(db, input.convoId, caller);
    await updateCursor(db, input.convoId, { did: caller, deviceId }, input.cursor, now);
    return { success: true };
  },
});
