import { z } from "zod";
import * as schemas from "../schemas.js";
import { publishKeyPackages } from "../services/keyPackages.js";
import { procedure } from "../xrpc.js";
import { keyPackageInput, prepareKeyPackage } from "./publishKeyPackage.js";

export const MAX_KEY_PACKAGES_PER_CALL = 100;

export default procedure({
  name: "publishKeyPackages",
  input: z.object({
    keyPackages: z.array(keyPackageInput).min(1).max(MAX_KEY_PACKAGES_PER_CALL),
    idempotencyKey: schemas.idempotencyKey.optional(),
  }),
  async handler(input, { app, caller, db, now }) {
    const packages = await Promise.all(input.keyPackages.map((pkg) => prepareKeyPackage(pkg, app.config, caller, now)));
    return publishKeyPackages(db, caller, packages, now);
  },
});
