import { z } from "zod";
import { forbidden, invalidRequest, notApplicationMessage } from "../errors.js";
import { readMlsMessage, startsWithMlsMessage } from "../mls/message.js";
import * as schemas from "../schemas.js";
import { IMPLICIT_DEVICE } from "../services/actingDevice.js";
import { sendMessage, type SendMessage } from "../services/messages.js";
import { jsonText, procedure, type HandlerContext } from "../xrpc.js";

const input = z.object({
  convoId: schemas.convoId,
  ciphertext: schemas.bytes,
  epoch: schemas.epoch,
  senderDid: schemas.did.optional(),
  deviceId: schemas.deviceId.optional(),
  idempotencyKey: schemas.idempotencyKey.optional(),
});

export default procedure({
  name: "sendMessage",
  input,
  async handler(body, hc) {
    const message = messageOf(body, hc);
    // A keyed send gets here only on the general path, inside its key's transaction: it cannot join a batch.
    if (hc.idempotencyKey !== undefined) return sendMessage(hc.db, message);
    const outcome = await hc.sends.send(message, undefined, hc.deadlinePassed);
    if (!outcome || !("sent" in outcome)) return sendMessage(hc.db, message);
    hc.announced();
    return jsonText(hc.c, outcome.sent);
  },
  async once(body, hc, claim) {
    const message = messageOf(body, hc);
    const [caller, , key] = claim.scope;
    // The batch scopes the key's record by the sender and the message's key: they must be the claim's.
    if (caller !== message.sender || key !== message.idempotencyKey) return undefined;
    const outcome = await hc.sends.send(message, claim, hc.deadlinePassed);
    if (outcome && "sent" in outcome) hc.announced();
    return outcome;
  },
});

/**
 * The message to store, once the request is checked: sender, size, and what the MLS framing says. Only application
 * messages and proposals enter the log here (rule 3): any other MLS message, a commit above all, is refused, so a
 * commit never bypasses the one-per-epoch path. Bytes that are no MLS message at all are opaque application data,
 * which only the send itself can refuse (it reads whether the conversation is roster-checked); it checks the
 * sending device too, so the common send stays one statement.
 */
function messageOf(body: z.output<typeof input>, { app, caller, idempotencyKey, now }: HandlerContext): SendMessage {
  if (body.senderDid !== undefined && body.senderDid !== caller) throw forbidden("senderDid must be the caller");
  const size = body.ciphertext.byteLength;
  if (size < 1 || size > app.config.MAX_CIPHERTEXT_BYTES) {
    throw invalidRequest(`ciphertext must be 1 to ${app.config.MAX_CIPHERTEXT_BYTES} bytes`);
  }
  const mls = readMlsMessage(body.ciphertext);
  const message = {
    convoId: body.convoId,
    sender: caller,
    senderDevice: body.deviceId ?? IMPLICIT_DEVICE,
    epoch: body.epoch,
    ciphertext: body.ciphertext,
    idempotencyKey,
    now,
  };
  if (!mls && startsWithMlsMessage(body.ciphertext)) {
    throw notApplicationMessage("the bytes are an MLS message followed by trailing bytes");
  }
  if (!mls) return { ...message, messageType: "app", opaque: true };
  if (mls.contentType !== "application" && mls.contentType !== "proposal") {
    const kind = mls.contentType ?? mls.wireFormat.replace("_", " ");
    throw notApplicationMessage(`sendMessage takes application messages and proposals, not a ${kind}`);
  }
  // readMlsMessage leaves out an epoch beyond Number.MAX_SAFE_INTEGER, which no epoch field can equal.
  if (mls.epoch !== body.epoch) {
    const framed = mls.epoch ?? `beyond ${Number.MAX_SAFE_INTEGER}`;
    throw invalidRequest(`epoch field ${body.epoch} disagrees with the message's epoch ${framed}`);
  }
  const messageType = mls.contentType === "proposal" ? "proposal" : "app";
  return { ...message, messageType, groupId: mls.groupId, opaque: false };
}
