import { z } from "zod";
import * as schemas from "../schemas.js";
import { IMPLICIT_DEVICE } from "../services/actingDevice.js";
import { updateCursor } from "../services/readCursors.js";
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
    const deviceId = input.deviceId ?? IMPLICIT_DEVICE;
    await updateCursor(db, { convoId: input.convoId, did: caller, deviceId, cursor: input.cursor, now });
    return { success: true };
  },
});
