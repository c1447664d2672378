/**
 * GroupInfos a malicious member forges: a tree of its own making (leaves re-keyed, moved, copied or made up),
 * with the group context's tree hash recomputed and the whole signed with the forger's own leaf key, so it passes
 * every check a GroupInfo alone allows (parsing, tree hash, signature). For adversarial tests only.
 */
import { getCiphersuiteFromName } from "ts-mls/crypto/ciphersuite.js";
import type { GroupContext } from "ts-mls/groupContext.js";
import { getCiphersuiteImpl } from "ts-mls/crypto/getCiphersuiteImpl.js";
import { ratchetTreeFromExtension, signGroupInfo } from "ts-mls/groupInfo.js";
import type { LeafNode } from "ts-mls/leafNode.js";
import { decodeMlsMessage, encodeMlsMessage } from "ts-mls/message.js";
import { encodeNode, type Node, type RatchetTree } from "ts-mls/ratchetTree.js";
import { treeHashRoot } from "ts-mls/treeHash.js";
import { SUITE } from "./rosterGroup.js";

/** A leaf node like `leaf` with other fields (e.g. another signature key or credential); its own signature is stale. */
export const alteredLeaf = (leaf: LeafNode, change: Partial<LeafNode>): Node => ({
  nodeType: "leaf",
  leaf: { ...leaf, ...change } as LeafNode,
});

export const basicCredential = (identity: string) => ({
  credentialType: "basic" as const,
  identity: new TextEncoder().encode(identity),
});

/**
 * The ratchet_tree extension's bytes, encoded node by node (ts-mls' own encoder recurses once per node and
 * overflows the stack on trees of a few thousand nodes). Trailing blank nodes are left out, as RFC 9420 asks.
 */
function encodeTree(tree: RatchetTree): Uint8Array {
  let end = tree.length;
  while (end > 0 && !tree[end - 1]) end--;
  const parts = tree.slice(0, end).map((node) => (node ? Uint8Array.from([1, ...encodeNode(node)]) : Uint8Array.of(0)));
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const header =
    total < 64
      ? [total]
      : total < 16384
        ? [0x40 | (total >> 8), total & 0xff]
        : [0x80 | (total >> 24), (total >> 16) & 0xff, (total >> 8) & 0xff, total & 0xff];
  const out = new Uint8Array(header.length + total);
  out.set(header);
  let offset = header.length;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Pads a tree in array form to 2^k - 1 nodes, as ts-mls does when it decodes one. */
function padded(tree: RatchetTree): RatchetTree {
  let size = 1;
  while (size < tree.length) size = size * 2 + 1;
  return [...tree, ...Array<undefined>(size - tree.length).fill(undefined)];
}

/**
 * `groupInfo` (an MLSMessage) with the tree `edit` returns (given a copy of its tree), re-hashed and signed again
 * with `signKey` (the signer leaf's private key, e.g. `member.state.signaturePrivateKey`; `signer` moves the signer
 * index, `context` overrides group context fields) as an MLSMessage.
 */
export async function forgeGroupInfo(
  groupInfo: Uint8Array,
  signKey: Uint8Array,
  edit: (tree: RatchetTree) => RatchetTree,
  { signer, context }: { signer?: number; context?: Partial<GroupContext> } = {},
): Promise<Uint8Array> {
  const cs = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE));
  const message = decodeMlsMessage(groupInfo, 0)![0];
  if (message.wireformat !== "mls_group_info") throw new Error("not a GroupInfo");
  const original = message.groupInfo;
  const tree = padded(edit([...ratchetTreeFromExtension(original)!]));
  const treeHash = await treeHashRoot(tree, cs.hash);
  const forged = await signGroupInfo(
    {
      groupContext: { ...original.groupContext, treeHash, ...context },
      extensions: [
        ...original.extensions.filter((extension) => extension.extensionType !== "ratchet_tree"),
        { extensionType: "ratchet_tree", extensionData: encodeTree(tree) },
      ],
      confirmationTag: original.confirmationTag,
      signer: signer ?? original.signer,
    },
    signKey,
    cs.signature,
  );
  return encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo: forged });
}
