import type { XrpcMethod } from "../xrpc.js";
import addMembers from "./addMembers.js";
import confirmWelcome from "./confirmWelcome.js";
import createConvo from "./createConvo.js";
import getCommits from "./getCommits.js";
import getConvos from "./getConvos.js";
import getDevices from "./getDevices.js";
import getEpoch from "./getEpoch.js";
import getGroupInfo from "./getGroupInfo.js";
import getKeyPackages from "./getKeyPackages.js";
import getMessages from "./getMessages.js";
import getWelcome from "./getWelcome.js";
import getKeyPackageStats from "./getKeyPackageStats.js";
import publishKeyPackage from "./publishKeyPackage.js";
import publishKeyPackages from "./publishKeyPackages.js";
import leaveConvo from "./leaveConvo.js";
import processCommit from "./processCommit.js";
import registerDevice from "./registerDevice.js";
import revokeDevice from "./revokeDevice.js";
import sendMessage from "./sendMessage.js";
import streamConvoEvents from "./streamConvoEvents.js";
import updateCursor from "./updateCursor.js";

/** Every XRPC method the server implements. */
export const methods: XrpcMethod[] = [
  createConvo,
  getConvos,
  getEpoch,
  addMembers,
  leaveConvo,
  processCommit,
  getGroupInfo,
  sendMessage,
  getMessages,
  getCommits,
  streamConvoEvents,
  updateCursor,
  getWelcome,
  confirmWelcome,
  publishKeyPackage,
  publishKeyPackages,
  getKeyPackages,
  getKeyPackageStats,
  registerDevice,
  getDevices,
  revokeDevice,
] as XrpcMethod[];
