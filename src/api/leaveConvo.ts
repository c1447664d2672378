import { z } from "zod";
import * as schemas from "../schemas.js";
import { leaveConvo } from "../services/members.js";
import { procedure } from "../xrpc.js";
import { commitInput } from "./membershipInput.js";

export default procedure({
  name: "leaveConvo",
  input: z.object({
    convoId: schemas.convoId,
    targetDid: schemas.did.optional(),
    commit: schemas.bytes.optional(),
    epoch: schemas.epoch.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  handler: (input, { app, caller, db, now }) =>
    leaveConvo(db, {
      convoId: input.convoId,
      caller,
      target: input.targetDid ?? caller,
      commit: commitInput(input.commit, input.epoch, app.config.MAX_CIPHERTEXT_BYTES),
      admins: app.config.ADMIN_DIDS,
      now,
    }),
});
