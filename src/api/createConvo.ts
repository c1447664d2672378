import { z } from "zod";
import { invalidCipherSuite, invalidRequest, tooManyMembers } from "../errors.js";
import * as schemas from "../schemas.js";
import { createConvo as create } from "../services/conversations.js";
import { checkWelcomeSuite } from "../services/welcomes.js";
import { IMPLICIT_DEVICE, requireDevice } from "../services/actingDevice.js";
import { createRosterConvo } from "../services/rosterConvo.js";
import { procedure, type HandlerContext } from "../xrpc.js";
import { deviceHashes, groupInfoInput, maxLeaves } from "./bundleInput.js";
import { welcomeInput } from "./welcomeInput.js";

export const MAX_MEMBERS_PER_CALL = 100;

export const createConvoInput = z.object({
  groupId: schemas.groupId,
  cipherSuite: schemas.cipherSuite,
  initialMembers: schemas.didList.optional(),
  welcomeMessage: schemas.nonEmptyBytes.optional(),
  keyPackageHashes: schemas.deviceKeyPackageHashes.optional(),
  groupInfo: schemas.bytes.optional(),
  deviceId: schemas.deviceId.optional(),
  metadata: z.object({ name: z.string().max(256).optional(), description: z.string().max(2048).optional() }).optional(),
  idempotencyKey: schemas.idempotencyKey.optional(),
});

export default procedure({
  name: "createConvo",
  input: createConvoInput,
  async handler(input, { app, caller, db, now }) {
    const { config } = app;
    if (!config.CIPHER_SUITES.includes(input.cipherSuite)) throw invalidCipherSuite(input.cipherSuite);
    if (input.groupInfo) return createWithRoster(input, input.groupInfo, { app, caller, db, now });
    await requireDevice(db, caller, input.deviceId, now);
    const requested = input.initialMembers ?? [];
    if (requested.length > MAX_MEMBERS_PER_CALL) {
      throw tooManyMembers(`at most ${MAX_MEMBERS_PER_CALL} initial members per call`);
    }
    const members = [...new Set(requested)].filter((did) => did !== caller);
    if (members.length + 1 > config.MAX_MEMBERS_PER_CONVO) {
      throw tooManyMembers(`a conversation holds at most ${config.MAX_MEMBERS_PER_CONVO} members`);
    }
    const hashes = new Map((input.keyPackageHashes ?? []).map((entry) => [entry.did, entry.hash]));
    for (const did of hashes.keys()) {
      if (!members.includes(did)) throw invalidRequest(`keyPackageHashes names ${did}, who is not an initial member`);
    }
    if (input.welcomeMessage && members.length === 0) {
      throw invalidRequest("welcomeMessage needs at least one initial member");
    }
    const welcome = welcomeInput(input.welcomeMessage);
    if (welcome) checkWelcomeSuite(welcome, input.cipherSuite);
    return create(db, {
      id: crypto.randomUUID(),
      groupId: input.groupId,
      creator: caller,
      cipherSuite: input.cipherSuite,
      members,
      welcome: welcome?.bytes,
      keyPackageHashes: hashes,
      name: input.metadata?.name,
      description: input.metadata?.description,
      now,
    });
  },
});

/** createConvo with a GroupInfo: a roster-checked conversation whose members are the GroupInfo's tree. */
function createWithRoster(
  input: z.output<typeof createConvoInput>,
  groupInfo: Uint8Array,
  { app, caller, db, now }: Pick<HandlerContext, "app" | "caller" | "db" | "now">,
) {
  const welcome = welcomeInput(input.welcomeMessage);
  if (welcome) checkWelcomeSuite(welcome, input.cipherSuite);
  if ((input.initialMembers?.length ?? 0) > MAX_MEMBERS_PER_CALL) {
    throw tooManyMembers(`at most ${MAX_MEMBERS_PER_CALL} initial members per call`);
  }
  return createRosterConvo(db, {
    id: crypto.randomUUID(),
    groupId: input.groupId,
    creator: caller,
    deviceId: input.deviceId ?? IMPLICIT_DEVICE,
    cipherSuite: input.cipherSuite,
    initialMembers: input.initialMembers && [...new Set(input.initialMembers)].filter((did) => did !== caller),
    groupInfo: groupInfoInput(groupInfo, app.config.MAX_CIPHERTEXT_BYTES),
    welcome,
    keyPackageHashes: deviceHashes(input.keyPackageHashes),
    name: input.metadata?.name,
    description: input.metadata?.description,
    maxInitialMembers: MAX_MEMBERS_PER_CALL,
    maxMembers: app.config.MAX_MEMBERS_PER_CONVO,
    // A new conversation holds the caller and at most MAX_MEMBERS_PER_CALL others, each with all its devices.
    maxLeaves: Math.min(maxLeaves(app.config), (MAX_MEMBERS_PER_CALL + 1) * (app.config.MAX_DEVICES_PER_DID + 1)),
    now,
  });
}
