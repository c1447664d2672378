import { z } from "zod";
import { forbidden, invalidRequest } from "../errors.js";
import { readMlsMessage } from "../mls/message.js";
import * as schemas from "../schemas.js";
import { sendMessage, sendMessageOnce, type SendMessage } from "../services/messages.js";
import { procedure, type HandlerContext } from "../xrpc.js";

const input = z.object({
  convoId: schemas.convoId,
  ciphertext: schemas.bytes,
  epoch: schemas.epoch,
  senderDid: schemas.did.optional(),
  idempotencyKey: schemas.idempotencyKey.optional(),
});

export default procedure({
  name: "sendMessage",
  input,
  handler: async (body, hc) => sendMessage(hc.db, messageOf(body, hc)),
  once: async (body, hc, claim) => sendMessageOnce(hc.db, messageOf(body, hc), claim),
});

/** The message to store, once the request is checked: sender, size, and the MLS framing's epoch and group. */
function messageOf(body: z.output<typeof input>, { app, caller, idempotencyKey, now }: HandlerContext): SendMessage {
  if (body.senderDid !== undefined && body.senderDid !== caller) throw forbidden("senderDid must be the caller");
  const size = body.ciphertext.byteLength;
  if (size < 1 || size > app.config.MAX_CIPHERTEXT_BYTES) {
    throw invalidRequest(`ciphertext must be 1 to ${app.config.MAX_CIPHERTEXT_BYTES} bytes`);
  }
  const mls = readMlsMessage(body.ciphertext);
  const framed = mls && (mls.wireFormat === "private_message" || mls.wireFormat === "public_message");
  if (framed && mls.epoch !== undefined && mls.epoch !== body.epoch) {
    throw invalidRequest(`epoch field ${body.epoch} disagrees with the message's epoch ${mls.epoch}`);
  }
  return {
    convoId: body.convoId,
    sender: caller,
    epoch: body.epoch,
    ciphertext: body.ciphertext,
    idempotencyKey,
    groupId: framed ? mls.groupId : undefined,
    now,
  };
}
