/**
 * The server's methods, as types only: the client loads nothing of the server, it reads each method's input
 * schema and handler answer from the definitions in `src/api/`.
 */
import type addMembers from "../api/addMembers.js";
import type confirmWelcome from "../api/confirmWelcome.js";
import type createConvo from "../api/createConvo.js";
import type getCommits from "../api/getCommits.js";
import type getConvos from "../api/getConvos.js";
import type getDevices from "../api/getDevices.js";
import type getEpoch from "../api/getEpoch.js";
import type getGroupInfo from "../api/getGroupInfo.js";
import type getKeyPackages from "../api/getKeyPackages.js";
import type getKeyPackageStats from "../api/getKeyPackageStats.js";
import type getMessages from "../api/getMessages.js";
import type getWelcome from "../api/getWelcome.js";
import type leaveConvo from "../api/leaveConvo.js";
import type processCommit from "../api/processCommit.js";
import type publishKeyPackage from "../api/publishKeyPackage.js";
import type publishKeyPackages from "../api/publishKeyPackages.js";
import type registerDevice from "../api/registerDevice.js";
import type revokeDevice from "../api/revokeDevice.js";
import type sendMessage from "../api/sendMessage.js";
import type streamConvoEvents from "../api/streamConvoEvents.js";
import type updateCursor from "../api/updateCursor.js";

export interface Methods {
  addMembers: typeof addMembers;
  confirmWelcome: typeof confirmWelcome;
  createConvo: typeof createConvo;
  getCommits: typeof getCommits;
  getConvos: typeof getConvos;
  getDevices: typeof getDevices;
  getEpoch: typeof getEpoch;
  getGroupInfo: typeof getGroupInfo;
  getKeyPackages: typeof getKeyPackages;
  getKeyPackageStats: typeof getKeyPackageStats;
  getMessages: typeof getMessages;
  getWelcome: typeof getWelcome;
  leaveConvo: typeof leaveConvo;
  processCommit: typeof processCommit;
  publishKeyPackage: typeof publishKeyPackage;
  publishKeyPackages: typeof publishKeyPackages;
  registerDevice: typeof registerDevice;
  revokeDevice: typeof revokeDevice;
  sendMessage: typeof sendMessage;
  streamConvoEvents: typeof streamConvoEvents;
  updateCursor: typeof updateCursor;
}

type MethodName = keyof Methods;
/** The methods answering JSON (every one but the event stream). */
export type JsonMethodName = Exclude<MethodName, "streamConvoEvents">;

/** GET or POST per method: the type checks each entry against the server's own definition. */
export const KINDS: { [N in JsonMethodName]: Methods[N]["type"] } = {
  addMembers: "procedure",
  confirmWelcome: "procedure",
  createConvo: "procedure",
  getCommits: "query",
  getConvos: "query",
  getDevices: "query",
  getEpoch: "query",
  getGroupInfo: "query",
  getKeyPackages: "query",
  getKeyPackageStats: "query",
  getMessages: "query",
  getWelcome: "query",
  leaveConvo: "procedure",
  processCommit: "procedure",
  publishKeyPackage: "procedure",
  publishKeyPackages: "procedure",
  registerDevice: "procedure",
  revokeDevice: "procedure",
  sendMessage: "procedure",
  updateCursor: "procedure",
};
