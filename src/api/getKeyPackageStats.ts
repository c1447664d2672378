import { z } from "zod";
import { invalidCipherSuite } from "../errors.js";
import * as schemas from "../schemas.js";
import { requireDevice } from "../services/actingDevice.js";
import { countAvailableKeyPackages } from "../services/keyPackages.js";
import { query } from "../xrpc.js";

export default query({
  name: "getKeyPackageStats",
  input: z.object({ cipherSuite: schemas.cipherSuite.optional(), deviceId: schemas.deviceId.optional() }),
  async handler(input, { app, caller, db, now }) {
    if (input.cipherSuite && !app.config.CIPHER_SUITES.includes(input.cipherSuite)) {
      throw invalidCipherSuite(input.cipherSuite);
    }
    // Without deviceId: all of the caller's devices together, as before devices existed.
    const deviceId = input.deviceId === undefined ? undefined : await requireDevice(db, caller, input.deviceId, now);
    const available = await countAvailableKeyPackages(db, caller, { cipherSuite: input.cipherSuite, deviceId }, now);
    const threshold = app.config.KEY_PACKAGE_THRESHOLD;
    return { available, threshold, needsReplenish: available < threshold };
  },
});
