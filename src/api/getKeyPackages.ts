import { z } from "zod";
import { invalidCipherSuite } from "../errors.js";
import * as schemas from "../schemas.js";
import { claimKeyPackages } from "../services/keyPackageClaims.js";
import { query } from "../xrpc.js";

export const MAX_DIDS_PER_CALL = 100;

export default query({
  name: "getKeyPackages",
  input: z.object({
    dids: z.array(schemas.did).min(1).max(MAX_DIDS_PER_CALL),
    cipherSuite: schemas.cipherSuite.optional(),
  }),
  async handler(input, { app, caller, db, now }) {
    if (input.cipherSuite && !app.config.CIPHER_SUITES.includes(input.cipherSuite)) {
      throw invalidCipherSuite(input.cipherSuite);
    }
    return claimKeyPackages(db, {
      dids: input.dids,
      cipherSuite: input.cipherSuite,
      caller,
      now,
      reservationSeconds: app.config.KEY_PACKAGE_RESERVATION_SECONDS,
      maxBytes: app.config.MAX_PAGE_BYTES,
    });
  },
});
