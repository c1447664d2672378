import { z } from "zod";
import * as schemas from "../schemas.js";
import { requireDevice } from "../services/actingDevice.js";
import { processCommit } from "../services/commitBundle.js";
import { leaveConvo } from "../services/members.js";
import { procedure } from "../xrpc.js";
import { commitBundleOf } from "./bundleInput.js";
import { commitInput } from "./membershipInput.js";

export default procedure({
  name: "leaveConvo",
  input: z.object({
    convoId: schemas.convoId,
    targetDid: schemas.did.optional(),
    commit: schemas.bytes.optional(),
    epoch: schemas.epoch.optional(),
    groupInfo: schemas.bytes.optional(),
    deviceId: schemas.deviceId.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, hc) {
    const { app, caller, db, now } = hc;
    const target = input.targetDid ?? caller;
    if (input.groupInfo) {
      // A roster-checked conversation: the commit bundle must remove every device of the target and nothing else.
      const bundle = commitBundleOf({ ...input, groupInfo: input.groupInfo }, hc, { kind: "remove", did: target });
      return { success: true, newEpoch: (await processCommit(db, bundle)).newEpoch };
    }
    const deviceId = await requireDevice(db, caller, input.deviceId, now);
    return leaveConvo(db, {
      convoId: input.convoId,
      caller,
      deviceId,
      target,
      commit: commitInput(input.commit, input.epoch, app.config.MAX_CIPHERTEXT_BYTES),
      admins: app.config.ADMIN_DIDS,
      now,
    });
  },
});
