import { z } from "zod";
import { invalidCipherSuite } from "../errors.js";
import * as schemas from "../schemas.js";
import { countAvailableKeyPackages } from "../services/keyPackages.js";
import { query } from "../xrpc.js";

export default query({
  name: "getKeyPackageStats",
  input: z.object({ cipherSuite: schemas.cipherSuite.optional() }),
  async handler(input, { app, caller, db, now }) {
    if (input.cipherSuite && !app.config.CIPHER_SUITES.includes(input.cipherSuite)) {
      throw invalidCipherSuite(input.cipherSuite);
    }
    const available = await countAvailableKeyPackages(db, caller, input.cipherSuite, now);
    const threshold = app.config.KEY_PACKAGE_THRESHOLD;
    return { available, threshold, needsReplenish: available < threshold };
  },
});
