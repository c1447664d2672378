import { z } from "zod";
import { invalidCipherSuite } from "../errors.js";
import * as schemas from "../schemas.js";
import { claimKeyPackages } from "../services/keyPackages.js";
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
    const reservation = app.config.KEY_PACKAGE_RESERVATION_SECONDS;
    return claimKeyPackages(db, input.dids, input.cipherSuite, caller, now, reservation);
  },
});
