import { z } from "zod";
import * as schemas from "../schemas.js";
import { processCommit } from "../services/commitBundle.js";
import { procedure } from "../xrpc.js";
import { commitBundleOf } from "./bundleInput.js";

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
  handler: (input, hc) => processCommit(hc.db, commitBundleOf(input, hc)),
});
