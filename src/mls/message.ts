import { decodeMlsMessage, type MLSMessage } from "ts-mls/message.js";
import type { SenderTypeName } from "ts-mls/sender.js";
import { decodeExactly, toHex } from "./decode.js";

export type MlsWireFormat = "public_message" | "private_message" | "welcome" | "group_info" | "key_package";
export type MlsContentType = "application" | "proposal" | "commit";

/** What a delivery service can read from an MLSMessage without any group secrets. */
export interface MlsMessageInfo {
  wireFormat: MlsWireFormat;
  /** The MLS group id as lowercase hex: from the header of public and private messages, from the group context of a GroupInfo. */
  groupId?: string;
  /**
   * The epoch beside `groupId`. Left out when it exceeds Number.MAX_SAFE_INTEGER (epochs are uint64 on the wire),
   * so a caller never compares a rounded number; no real group reaches 2^53 commits.
   */
  epoch?: number;
  /** Public and private messages only. */
  contentType?: MlsContentType;
  /** Who sent a PublicMessage (a PrivateMessage encrypts its sender): the type, and the leaf index of a member. */
  sender?: { type: SenderTypeName; leafIndex?: number };
}

/**
 * Reads the clear-text header of an RFC 9420 MLSMessage (§6). Undefined when the bytes are not exactly one
 * well-formed MLSMessage (unknown version or wire format, truncated, trailing bytes): the caller then treats them
 * as opaque. Never throws. Reads only; it verifies no signature, membership tag or ciphertext.
 *
 * @example
 * readMlsMessage(body)?.epoch // 3 for a commit sent in epoch 3, undefined for non-MLS bytes
 */
export function readMlsMessage(bytes: Uint8Array): MlsMessageInfo | undefined {
  const message = decodeExactly(decodeMlsMessage, bytes);
  return message && describe(message);
}

function describe(message: MLSMessage): MlsMessageInfo {
  switch (message.wireformat) {
    case "mls_public_message": {
      const { groupId, epoch, contentType, sender } = message.publicMessage.content;
      const leafIndex = sender.senderType === "member" ? { leafIndex: sender.leafIndex } : {};
      return {
        wireFormat: "public_message",
        ...groupAndEpoch(groupId, epoch),
        contentType,
        sender: { type: sender.senderType, ...leafIndex },
      };
    }
    case "mls_private_message": {
      const { groupId, epoch, contentType } = message.privateMessage;
      return { wireFormat: "private_message", ...groupAndEpoch(groupId, epoch), contentType };
    }
    case "mls_group_info": {
      const { groupId, epoch } = message.groupInfo.groupContext;
      return { wireFormat: "group_info", ...groupAndEpoch(groupId, epoch) };
    }
    case "mls_welcome":
      return { wireFormat: "welcome" };
    case "mls_key_package":
      return { wireFormat: "key_package" };
  }
}

function groupAndEpoch(groupId: Uint8Array, epoch: bigint): Pick<MlsMessageInfo, "groupId" | "epoch"> {
  const hex = toHex(groupId);
  return epoch <= BigInt(Number.MAX_SAFE_INTEGER) ? { groupId: hex, epoch: Number(epoch) } : { groupId: hex };
}

/**
 * True when the bytes begin with a well-formed MLSMessage, whatever follows. A client decoding leniently
 * would read such bytes as that message, so they are never opaque data (a commit with one byte appended
 * must not pass as an application message).
 */
export function startsWithMlsMessage(bytes: Uint8Array): boolean {
  try {
    return decodeMlsMessage(bytes, 0) !== undefined;
  } catch {
    return false;
  }
}
