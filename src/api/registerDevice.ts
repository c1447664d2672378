import { z } from "zod";
import * as schemas from "../schemas.js";
import { registerDevice } from "../services/devices.js";
import { procedure } from "../xrpc.js";

/** A device's name for its owner: at most 64 characters, no control characters (Postgres refuses NUL) or lone surrogates. */
const deviceName = z
  .string()
  .max(64)
  .regex(/^[^\p{Cc}\p{Cs}]*$/u, "must not contain control characters");

export default procedure({
  name: "registerDevice",
  input: z.strictObject({
    deviceId: schemas.deviceId,
    name: deviceName.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  handler: (input, { app, caller, db, now }) =>
    registerDevice(db, {
      did: caller,
      deviceId: input.deviceId,
      name: input.name,
      maxDevices: app.config.MAX_DEVICES_PER_DID,
      now,
    }),
});
