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
    // Without deviceId: the implicit device, as for every request that acts as a device. An old client publishes only
    // its own (bare-DID) packages and replenishes by this answer, so its DID's other devices must not count here.
    const deviceId = await requireDevice(db, caller, input.deviceId, now);
    const available = await countAvailableKeyPackages(db, caller, { cipherSuite: input.cipherSuite, deviceId }, now);
    const threshold = app.config.KEY_PACKAGE_THRESHOLD;
    return { available, threshold, needsReplenish: available < threshold };
  },
});
