import type { XrpcMethod } from "../xrpc.js";
import createConvo from "./createConvo.js";
import getConvos from "./getConvos.js";
import getEpoch from "./getEpoch.js";

/** Every XRPC method the server implements. */
export const methods: XrpcMethod[] = [createConvo, getConvos, getEpoch] as XrpcMethod[];
