import { z } from "zod";
import { invalidRequest, tooManyMembers } from "../errors.js";
import * as schemas from "../schemas.js";
import { requireDevice } from "../services/actingDevice.js";
import { processCommit } from "../services/commitBundle.js";
import { addMembers } from "../services/members.js";
import { procedure } from "../xrpc.js";
import { commitBundleOf } from "./bundleInput.js";
import { MAX_MEMBERS_PER_CALL } from "./createConvo.js";
import { commitInput } from "./membershipInput.js";
import { welcomeInput } from "./welcomeInput.js";

export default procedure({
  name: "addMembers",
  input: z.object({
    convoId: schemas.convoId,
    didList: schemas.didList.min(1),
    commit: schemas.bytes.optional(),
    welcomeMessage: schemas.nonEmptyBytes.optional(),
    keyPackageHashes: schemas.deviceKeyPackageHashes.optional(),
    epoch: schemas.epoch.optional(),
    groupInfo: schemas.bytes.optional(),
    deviceId: schemas.deviceId.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, hc) {
    const { app, caller, db, now } = hc;
    if (input.didList.length > MAX_MEMBERS_PER_CALL) {
      throw tooManyMembers(`at most ${MAX_MEMBERS_PER_CALL} members per call`);
    }
    const dids = [...new Set(input.didList)];
    if (input.groupInfo) {
      // A roster-checked conversation: the commit bundle decides, and must add devices of exactly these DIDs.
      const bundle = commitBundleOf({ ...input, groupInfo: input.groupInfo }, hc, { kind: "add", dids });
      return { success: true, newEpoch: (await processCommit(db, bundle)).newEpoch };
    }
    const deviceId = await requireDevice(db, caller, input.deviceId, now);
    const hashes = new Map((input.keyPackageHashes ?? []).map((entry) => [entry.did, entry.hash]));
    for (const did of hashes.keys()) {
      if (!dids.includes(did)) throw invalidRequest(`keyPackageHashes names ${did}, who is not in didList`);
    }
    return addMembers(db, {
      convoId: input.convoId,
      caller,
      deviceId,
      dids,
      commit: commitInput(input.commit, input.epoch, app.config.MAX_CIPHERTEXT_BYTES),
      welcome: welcomeInput(input.welcomeMessage),
      keyPackageHashes: hashes,
      maxMembers: app.config.MAX_MEMBERS_PER_CONVO,
      now,
    });
  },
});
