import type { Config } from "../config.js";
import { invalidRequest } from "../errors.js";
import { IMPLICIT_DEVICE } from "../services/actingDevice.js";
import type { CommitBundle, Declared, KeyPackageHash } from "../services/commitBundle.js";
import type { HandlerContext } from "../xrpc.js";
import { commitInput } from "./membershipInput.js";
import { welcomeInput } from "./welcomeInput.js";

/** A commit bundle's `groupInfo`, size-checked (its MLS content is read by the service, with the conversation's suite). */
export function groupInfoInput(groupInfo: Uint8Array, maxBytes: number): Uint8Array {
  if (groupInfo.byteLength < 1 || groupInfo.byteLength > maxBytes) {
    throw invalidRequest(`groupInfo must be 1 to ${maxBytes} bytes`);
  }
  return groupInfo;
}

/** The most leaves a conversation's tree can hold: every member with all its devices and its implicit one. */
export const maxLeaves = (config: Config) => config.MAX_MEMBERS_PER_CONVO * (config.MAX_DEVICES_PER_DID + 1);

/** keyPackageHashes entries naming devices; an entry without deviceId names the DID's implicit device. */
export function deviceHashes(
  entries: { did: string; deviceId?: string; hash: string }[] | undefined,
): KeyPackageHash[] | undefined {
  return entries?.map(({ did, deviceId = IMPLICIT_DEVICE, hash }) => ({ did, deviceId, hash }));
}

/** The fields of processCommit, and of addMembers / leaveConvo carrying a commit bundle. */
export interface BundleFields {
  convoId: string;
  commit?: Uint8Array;
  epoch?: number;
  groupInfo: Uint8Array;
  welcomeMessage?: Uint8Array;
  keyPackageHashes?: { did: string; deviceId?: string; hash: string }[];
  deviceId?: string;
}

/** The commit bundle a request carries, read and bounded; `declared` is what addMembers / leaveConvo say it does. */
export function commitBundleOf(
  fields: BundleFields,
  { app, caller, now }: Pick<HandlerContext, "app" | "caller" | "now">,
  declared?: Declared,
): CommitBundle {
  const { config } = app;
  const commit = commitInput(fields.commit, fields.epoch, config.MAX_CIPHERTEXT_BYTES);
  if (!commit) throw invalidRequest("groupInfo comes with a commit");
  return {
    convoId: fields.convoId,
    caller,
    deviceId: fields.deviceId ?? IMPLICIT_DEVICE,
    commit,
    groupInfo: groupInfoInput(fields.groupInfo, config.MAX_CIPHERTEXT_BYTES),
    welcome: welcomeInput(fields.welcomeMessage),
    keyPackageHashes: deviceHashes(fields.keyPackageHashes),
    ...(declared && { declared }),
    admins: config.ADMIN_DIDS,
    maxMembers: config.MAX_MEMBERS_PER_CONVO,
    maxLeaves: maxLeaves(config),
    rejoinCooldownSeconds: config.REJOIN_COOLDOWN_SECONDS,
    now,
  };
}
