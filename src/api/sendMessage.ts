import { z } from "zod";
import { forbidden, invalidRequest } from "../errors.js";
import { readMlsMessage } from "../mls/message.js";
import * as schemas from "../schemas.js";
import { sendMessage } from "../services/messages.js";
import { procedure } from "../xrpc.js";

export default procedure({
  name: "sendMessage",
  input: z.object({
    convoId: schemas.convoId,
    ciphertext: schemas.bytes,
    epoch: schemas.epoch,
    senderDid: schemas.did.optional(),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, { app, caller, db, idempotencyKey, now }) {
    if (input.senderDid !== undefined && input.senderDid !== caller) throw forbidden("senderDid must be the caller");
    const size = input.ciphertext.byteLength;
    if (size < 1 || size > app.config.MAX_CIPHERTEXT_BYTES) {
      throw invalidRequest(`ciphertext must be 1 to ${app.config.MAX_CIPHERTEXT_BYTES} bytes`);
    }
    const mls = readMlsMessage(input.ciphertext);
    const framed = mls && (mls.wireFormat === "private_message" || mls.wireFormat === "public_message");
    if (framed && mls.epoch !== undefined && mls.epoch !== input.epoch) {
      throw invalidRequest(`epoch field ${input.epoch} disagrees with the message's epoch ${mls.epoch}`);
    }
    return sendMessage(db, {
      convoId: input.convoId,
      sender: caller,
      epoch: input.epoch,
      ciphertext: input.ciphertext,
      idempotencyKey,
      groupId: framed ? mls.groupId : undefined,
      now,
    });
  },
});
