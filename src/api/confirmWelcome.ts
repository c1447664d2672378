import { z } from "zod";
import * as schemas from "../schemas.js";
import { requireActiveMember } from "../services/membership.js";
import { confirmWelcome } from "../services/welcomes.js";
import { procedure } from "../xrpc.js";

export default procedure({
  name: "confirmWelcome",
  input: z.object({
    convoId: schemas.convoId,
    success: z.boolean(),
    errorDetails: z.string().max(1024).optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, { caller, db, now }) {
    await requireActiveMember(db, input.convoId, caller);
    return confirmWelcome(db, input.convoId, caller, { success: input.success, errorDetails: input.errorDetails }, now);
  },
});
