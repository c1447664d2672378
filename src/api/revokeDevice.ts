import { z } from "zod";
import * as schemas from "../schemas.js";
import { revokeDevice } from "../services/devices.js";
import { procedure } from "../xrpc.js";

export default procedure({
  name: "revokeDevice",
  input: z.strictObject({
    deviceId: schemas.deviceId,
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, { caller, changed, db, now }) {
    const { announce } = await revokeDevice(db, caller, input.deviceId, now);
    // Their deviceRevoked events wake the streams once the revocation committed.
    changed(announce);
    return { revoked: true };
  },
});
