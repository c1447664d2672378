import { getCiphersuiteFromName, type CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { makeNobleSignatureImpl } from "ts-mls/crypto/implementation/default/makeNobleSignatureImpl.js";
import { verifyFramedContentSignature } from "ts-mls/framedContent.js";
import type { GroupContext } from "ts-mls/groupContext.js";
import { decodeMlsMessage } from "ts-mls/message.js";
import type { PublicMessage } from "ts-mls/publicMessage.js";
import { decodeExactly, utf8 } from "./decode.js";

/** What a commit sent as a PublicMessage shows: the proposals it carries by value, and the key it was signed with. */
export interface PublicCommit {
  /** The credential identities of the key packages its Add proposals carry ("" for one that is not basic UTF-8). */
  adds: string[];
  /** The leaves its Remove proposals remove. */
  removes: number[];
  /** It also commits proposals by reference, which only the group can resolve. */
  byReference: boolean;
  /** The signature key of the committer's new leaf in its update path (an external commit's joiner), if any. */
  pathSignatureKey?: Uint8Array;
  /** Whether its signature verifies with `signKey` over its content and the group context of its epoch. */
  verify(signKey: Uint8Array): Promise<boolean>;
}

/**
 * Reads a commit framed as a PublicMessage (undefined for anything else: a PrivateMessage hides all of this).
 * `epochGroupInfo` is the GroupInfo of the epoch the commit was sent in, as the server stored it: its group
 * context is part of what the committer signed. Never throws.
 */
export function readPublicCommit(
  commit: Uint8Array,
  epochGroupInfo: Uint8Array,
  cipherSuite: string,
): PublicCommit | undefined {
  const message = decodeExactly(decodeMlsMessage, commit);
  const stored = decodeExactly(decodeMlsMessage, epochGroupInfo);
  if (message?.wireformat !== "mls_public_message" || stored?.wireformat !== "mls_group_info") return undefined;
  const { publicMessage } = message;
  if (publicMessage.content.contentType !== "commit") return undefined;
  const { proposals, path } = publicMessage.content.commit;
  const adds: string[] = [];
  const removes: number[] = [];
  let byReference = false;
  for (const entry of proposals) {
    if (entry.proposalOrRefType === "reference") byReference = true;
    else if (entry.proposal.proposalType === "add") {
      const { credential } = entry.proposal.add.keyPackage.leafNode;
      adds.push((credential.credentialType === "basic" && utf8(credential.identity)) || "");
    } else if (entry.proposal.proposalType === "remove") removes.push(entry.proposal.remove.removed);
  }
  return {
    adds,
    removes,
    byReference,
    ...(path && { pathSignatureKey: path.leafNode.signaturePublicKey }),
    verify: (signKey) => verifySignature(publicMessage, stored.groupInfo.groupContext, signKey, cipherSuite),
  };
}

async function verifySignature(
  message: PublicMessage,
  context: GroupContext,
  signKey: Uint8Array,
  cipherSuite: string,
): Promise<boolean> {
  try {
    const { signature } = getCiphersuiteFromName(cipherSuite as CiphersuiteName);
    const impl = await makeNobleSignatureImpl(signature as Parameters<typeof makeNobleSignatureImpl>[0]);
    return await verifyFramedContentSignature(
      signKey,
      "mls_public_message",
      message.content,
      message.auth,
      context,
      impl,
    );
  } catch {
    // A key that is no point on the curve, a signature of the wrong length: both are a bad signature.
    return false;
  }
}
