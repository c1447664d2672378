import { describe, expect, it } from "vitest";
import type { CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { encodeKeyPackage } from "ts-mls/keyPackage.js";
import { decodeMlsMessage, encodeMlsMessage, type MLSMessage } from "ts-mls/message.js";
import { readKeyPackage } from "../../src/mls/keyPackage.js";
import { readMlsMessage } from "../../src/mls/message.js";
import { lifetime, makeGroupWithCommit, makeKeyPackage, TEST_CIPHER_SUITE } from "../helpers/mls.js";

const decode = (bytes: Uint8Array): MLSMessage => decodeMlsMessage(bytes, 0)![0];
const withTrailingByte = (bytes: Uint8Array) => Uint8Array.of(...bytes, 0);

/** Deterministic bytes, so a failing input can be found again. */
function seededBytes(seed: number) {
  let state = seed;
  return (length: number) =>
    Uint8Array.from({ length }, () => {
      state = (state * 1_103_515_245 + 12_345) >>> 0;
      return state >>> 24;
    });
}

describe("readMlsMessage on real ts-mls messages", () => {
  it("reads group id, epoch and content type of a commit framed as a PrivateMessage (ts-mls's default)", async () => {
    const group = await makeGroupWithCommit();
    expect(group.commitEpoch).toBe(0);
    expect(readMlsMessage(group.commitBytes)).toEqual({
      wireFormat: "private_message",
      groupId: group.groupIdHex,
      epoch: 0,
      contentType: "commit",
    });
  });

  it("reads a commit framed as a PublicMessage, with its sender", async () => {
    const group = await makeGroupWithCommit({ groupIdHex: "00ff10ab", publicCommit: true });
    expect(readMlsMessage(group.commitBytes)).toEqual({
      wireFormat: "public_message",
      groupId: "00ff10ab",
      epoch: 0,
      contentType: "commit",
      sender: { type: "member", leafIndex: 0 },
    });
  });

  it("reads an application message in the epoch after the commit", async () => {
    const group = await makeGroupWithCommit();
    expect(readMlsMessage(group.appMessageBytes)).toEqual({
      wireFormat: "private_message",
      groupId: group.groupIdHex,
      epoch: 1,
      contentType: "application",
    });
  });

  it("reads Welcome, GroupInfo and KeyPackage wire formats", async () => {
    const group = await makeGroupWithCommit();
    expect(readMlsMessage(group.welcomeBytes)).toEqual({ wireFormat: "welcome" });
    expect(readMlsMessage(group.groupInfoBytes)).toEqual({
      wireFormat: "group_info",
      groupId: group.groupIdHex,
      epoch: 1,
    });
    expect(readMlsMessage(group.keyPackageBytes)).toEqual({ wireFormat: "key_package" });
  });

  it("accepts a Buffer view into a larger allocation, as Postgres bytea arrives", async () => {
    const group = await makeGroupWithCommit();
    const padded = new Uint8Array(group.appMessageBytes.length + 8);
    padded.set(group.appMessageBytes, 4);
    const view = Buffer.from(padded.buffer, 4, group.appMessageBytes.length);
    expect(readMlsMessage(view)?.epoch).toBe(1);
  });

  it("leaves out an epoch beyond Number.MAX_SAFE_INTEGER but keeps the rest", async () => {
    const group = await makeGroupWithCommit();
    const message = decode(group.appMessageBytes);
    if (message.wireformat !== "mls_private_message") throw new Error("expected a PrivateMessage");
    const at = (epoch: bigint) =>
      encodeMlsMessage({ ...message, privateMessage: { ...message.privateMessage, epoch } });

    expect(readMlsMessage(at(BigInt(Number.MAX_SAFE_INTEGER)))?.epoch).toBe(Number.MAX_SAFE_INTEGER);
    expect(readMlsMessage(at(BigInt(Number.MAX_SAFE_INTEGER) + 1n))).toEqual({
      wireFormat: "private_message",
      groupId: group.groupIdHex,
      contentType: "application",
    });
    expect(readMlsMessage(at(2n ** 64n - 1n))?.epoch).toBeUndefined();
  });
});

describe("readKeyPackage on real ts-mls key packages", () => {
  it("reads the cipher suite name, the lifetime and the credential identity of an MLSMessage-framed key package", async () => {
    const notBefore = new Date("2025-01-01T00:00:00Z");
    const notAfter = new Date("2025-04-01T12:30:00Z");
    const bytes = await makeKeyPackage("did:plc:alice", lifetime(notBefore, notAfter));
    expect(readKeyPackage(bytes)).toMatchObject({
      cipherSuite: TEST_CIPHER_SUITE,
      notBefore,
      notAfter,
      identity: "did:plc:alice",
    });
  });

  it("verifies the package's and its leaf's signatures with the leaf's key", async () => {
    const message = decode(await makeKeyPackage());
    if (message.wireformat !== "mls_key_package") throw new Error("expected a key package");
    const read = readKeyPackage(encodeMlsMessage(message))!;
    expect(read.signatureKey).toEqual(message.keyPackage.leafNode.signaturePublicKey);
    expect(await read.verifySignatures()).toBe(true);
    // A flipped bit in the package's signature, or another key, and it no longer verifies.
    const signature = Uint8Array.from(message.keyPackage.signature);
    signature[0]! ^= 1;
    const forged = encodeMlsMessage({ ...message, keyPackage: { ...message.keyPackage, signature } });
    expect(await readKeyPackage(forged)!.verifySignatures()).toBe(false);
    const other = decode(await makeKeyPackage());
    if (other.wireformat !== "mls_key_package") throw new Error("expected a key package");
    const leafNode = {
      ...message.keyPackage.leafNode,
      signaturePublicKey: other.keyPackage.leafNode.signaturePublicKey,
    };
    const rekeyed = encodeMlsMessage({ ...message, keyPackage: { ...message.keyPackage, leafNode } });
    expect(await readKeyPackage(rekeyed)!.verifySignatures()).toBe(false);
  });

  it("reads a bare KeyPackage too", async () => {
    const message = decode(await makeKeyPackage());
    if (message.wireformat !== "mls_key_package") throw new Error("expected a key package");
    expect(readKeyPackage(encodeKeyPackage(message.keyPackage))?.cipherSuite).toBe(TEST_CIPHER_SUITE);
  });

  it("leaves out a notAfter that no Date can hold (ts-mls's default lifetime)", async () => {
    const read = readKeyPackage(await makeKeyPackage());
    expect(read).toMatchObject({ cipherSuite: TEST_CIPHER_SUITE, identity: "did:plc:test", notBefore: new Date(0) });
    expect(read).not.toHaveProperty("notAfter");
  });

  it("names cipher suites 1–7 by RFC 9420 and any other id in hex", async () => {
    const message = decode(await makeKeyPackage());
    if (message.wireformat !== "mls_key_package") throw new Error("expected a key package");
    const withSuite = (cipherSuite: string) =>
      encodeMlsMessage({
        ...message,
        keyPackage: { ...message.keyPackage, cipherSuite: cipherSuite as CiphersuiteName },
      });

    expect(readKeyPackage(withSuite("MLS_256_DHKEMP384_AES256GCM_SHA384_P384"))?.cipherSuite).toBe(
      "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
    );
    expect(readKeyPackage(withSuite("MLS_256_XWING_AES256GCM_SHA512_Ed25519"))?.cipherSuite).toBe("0x0053");
    expect(readKeyPackage(withSuite(String(0x1234)))?.cipherSuite).toBe("0x1234");
  });

  it("rejects other MLS messages", async () => {
    const group = await makeGroupWithCommit();
    for (const bytes of [group.commitBytes, group.welcomeBytes, group.appMessageBytes, group.groupInfoBytes]) {
      expect(readKeyPackage(bytes)).toBeUndefined();
    }
  });
});

describe("non-MLS input", () => {
  it("gives undefined for empty input, text and JSON", () => {
    for (const bytes of [new Uint8Array(), new TextEncoder().encode("hello"), new TextEncoder().encode('{"a":1}')]) {
      expect(readMlsMessage(bytes)).toBeUndefined();
      expect(readKeyPackage(bytes)).toBeUndefined();
    }
  });

  it("gives undefined for every truncation of real messages and for a trailing byte", async () => {
    const group = await makeGroupWithCommit({ publicCommit: true });
    const artefacts = [
      group.commitBytes,
      group.appMessageBytes,
      group.welcomeBytes,
      group.groupInfoBytes,
      group.keyPackageBytes,
    ];
    for (const bytes of artefacts) {
      expect(readMlsMessage(bytes)).toBeDefined();
      expect(readMlsMessage(withTrailingByte(bytes))).toBeUndefined();
      for (let length = 0; length < bytes.length; length++) {
        expect(readMlsMessage(bytes.subarray(0, length))).toBeUndefined();
      }
    }
    const keyPackage = group.keyPackageBytes;
    expect(readKeyPackage(withTrailingByte(keyPackage))).toBeUndefined();
    for (let length = 0; length < keyPackage.length; length++) {
      expect(readKeyPackage(keyPackage.subarray(0, length))).toBeUndefined();
    }
  });

  it("gives undefined for random bytes, also behind a valid MLS version and wire format", () => {
    const random = seededBytes(9420);
    for (let i = 0; i < 2_000; i++) {
      const body = random(i % 300);
      const wireFormat = i % 6; // 0 is reserved; 1–5 reach each ts-mls decoder
      for (const bytes of [body, Uint8Array.of(0, 1, 0, wireFormat, ...body)]) {
        expect(readMlsMessage(bytes)).toBeUndefined();
        expect(readKeyPackage(bytes)).toBeUndefined();
      }
    }
  });

  it("never throws on real messages with bytes flipped", async () => {
    const group = await makeGroupWithCommit({ publicCommit: true });
    const random = seededBytes(17);
    for (const original of [group.commitBytes, group.welcomeBytes, group.keyPackageBytes, group.groupInfoBytes]) {
      for (let i = 0; i < 300; i++) {
        const bytes = Uint8Array.from(original);
        const [position = 0, value = 0] = random(2);
        bytes[(position * 257 + i) % bytes.length] = value;
        expect(() => readMlsMessage(bytes)).not.toThrow();
        expect(() => readKeyPackage(bytes)).not.toThrow();
      }
    }
  });
});
