import { invalidRequest } from "../errors.js";
import { IMPLICIT_DEVICE } from "../services/actingDevice.js";
import type { KeyPackageHash } from "../services/commitBundle.js";

/** A commit bundle's `groupInfo`, size-checked (its MLS content is read by the service, with the conversation's suite). */
export function groupInfoInput(groupInfo: Uint8Array, maxBytes: number): Uint8Array {
  if (groupInfo.byteLength < 1 || groupInfo.byteLength > maxBytes) {
    throw invalidRequest(`groupInfo must be 1 to ${maxBytes} bytes`);
  }
  return groupInfo;
}

/** keyPackageHashes entries naming devices; an entry without deviceId names the DID's implicit device. */
export function deviceHashes(
  entries: { did: string; deviceId?: string; hash: string }[] | undefined,
): KeyPackageHash[] | undefined {
  return entries?.map(({ did, deviceId = IMPLICIT_DEVICE, hash }) => ({ did, deviceId, hash }));
}
