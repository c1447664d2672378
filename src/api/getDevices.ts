import { z } from "zod";
import { listDevices } from "../services/devices.js";
import { query } from "../xrpc.js";

export default query({
  name: "getDevices",
  input: z.strictObject({}),
  handler: (_input, { caller, db }) => listDevices(db, caller),
});
