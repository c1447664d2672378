import { z } from "zod";
import * as schemas from "../schemas.js";
import { IMPLICIT_DEVICE } from "../services/actingDevice.js";
import { processCommit } from "../services/commitBundle.js";
import { procedure } from "../xrpc.js";
import { deviceHashes, groupInfoInput } from "./bundleInput.js";
import { commitInput } from "./membershipInput.js";
import { welcomeInput } from "./welcomeInput.js";

export default procedure({
  name: "processCommit",
  input: z.object({
    convoId: schemas.convoId,
    epoch: schemas.epoch,
    commit: schemas.bytes,
    groupInfo: schemas.bytes,
    welcomeMessage: schemas.nonEmptyBytes.optional(),
    keyPackageHashes: schemas.deviceKeyPackageHashes.optional(),
    deviceId: schemas.deviceId.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  handler: (input, { app, caller, db, now }) =>
    processCommit(db, {
      convoId: input.convoId,
      caller,
      deviceId: input.deviceId ?? IMPLICIT_DEVICE,
      commit: commitInput(input.commit, input.epoch, app.config.MAX_CIPHERTEXT_BYTES)!,
      groupInfo: groupInfoInput(input.groupInfo, app.config.MAX_CIPHERTEXT_BYTES),
      welcome: welcomeInput(input.welcomeMessage),
      keyPackageHashes: deviceHashes(input.keyPackageHashes),
      admins: app.config.ADMIN_DIDS,
      maxMembers: app.config.MAX_MEMBERS_PER_CONVO,
      rejoinCooldownSeconds: app.config.REJOIN_COOLDOWN_SECONDS,
      now,
    }),
});
