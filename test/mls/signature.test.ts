/**
 * Signature checks of the slow schemes (P-256/384/521 ECDSA, Ed448): they must not hold the event loop (a check in
 * JavaScript takes ~8 ms, and a request may carry 200 of them), and they must answer exactly as ts-mls's noble
 * implementation does, for good signatures and for mangled signatures and keys.
 */
import { ed448 } from "@noble/curves/ed448.js";
import { p256, p384, p521 } from "@noble/curves/nist.js";
import { describe, expect, it } from "vitest";
import type { CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { makeNobleSignatureImpl } from "ts-mls/crypto/implementation/default/makeNobleSignatureImpl.js";
import { verifiesWith } from "../../src/mls/signature.js";

const MESSAGE = new TextEncoder().encode("the content a KeyPackage or GroupInfo signs");

const SCHEMES = [
  { suite: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256", algorithm: "P256", curve: p256 },
  { suite: "MLS_256_DHKEMP384_AES256GCM_SHA384_P384", algorithm: "P384", curve: p384 },
  { suite: "MLS_256_DHKEMP521_AES256GCM_SHA512_P521", algorithm: "P521", curve: p521 },
] as const;

function ecdsa(curve: (typeof SCHEMES)[number]["curve"], compressed = false) {
  const secret = curve.utils.randomSecretKey();
  return {
    publicKey: curve.getPublicKey(secret, compressed),
    signature: curve.sign(MESSAGE, secret, { prehash: true, format: "der", lowS: false }),
  };
}

function ed448Pair() {
  const secret = ed448.utils.randomSecretKey();
  return { publicKey: ed448.getPublicKey(secret), signature: ed448.sign(MESSAGE, secret) };
}

const ED448_SUITE = "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448";

const verify = (suite: string, publicKey: Uint8Array, signature: Uint8Array, message = MESSAGE) =>
  verifiesWith(suite as CiphersuiteName, (scheme) => scheme.verify(publicKey, message, signature));

/** ts-mls's own answer (noble), what clients decide. */
async function nobleSays(algorithm: "P256" | "P384" | "P521" | "Ed448", key: Uint8Array, sig: Uint8Array) {
  try {
    return await (await makeNobleSignatureImpl(algorithm)).verify(key, MESSAGE, sig);
  } catch {
    return false;
  }
}

const flip = (bytes: Uint8Array, at: number) => {
  const copy = bytes.slice();
  copy[at % copy.length]! ^= 1 << (at % 8);
  return copy;
};

describe("signature checks", () => {
  it("let other work run while 24 P-521 and Ed448 signatures are checked", async () => {
    const p521Pair = ecdsa(p521);
    const edPair = ed448Pair();
    let turns = 0;
    let checking = true;
    const turn = () => {
      if (!checking) return;
      turns++;
      setImmediate(turn);
    };
    setImmediate(turn);
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        i % 2 === 0
          ? verify(SCHEMES[2].suite, p521Pair.publicKey, p521Pair.signature)
          : verify(ED448_SUITE, edPair.publicKey, edPair.signature),
      ),
    );
    checking = false;
    expect(results).toEqual(Array(24).fill(true));
    expect(turns).toBeGreaterThan(0);
  });

  for (const { suite, algorithm, curve } of SCHEMES) {
    it(`answer as noble does for ${algorithm}: good, compressed keys, mangled signatures and keys, another message`, async () => {
      const pair = ecdsa(curve);
      expect(await verify(suite, pair.publicKey, pair.signature)).toBe(true);
      const compressed = ecdsa(curve, true);
      expect(await verify(suite, compressed.publicKey, compressed.signature)).toBe(
        await nobleSays(algorithm, compressed.publicKey, compressed.signature),
      );
      expect(await verify(suite, pair.publicKey, pair.signature, new TextEncoder().encode("other"))).toBe(false);
      for (let at = 0; at < pair.signature.length; at += 3) {
        const mangled = flip(pair.signature, at);
        expect(await verify(suite, pair.publicKey, mangled), `signature bit at ${at}`).toBe(
          await nobleSays(algorithm, pair.publicKey, mangled),
        );
      }
      for (let at = 0; at < pair.publicKey.length; at += 7) {
        const mangled = flip(pair.publicKey, at);
        expect(await verify(suite, mangled, pair.signature), `key bit at ${at}`).toBe(
          await nobleSays(algorithm, mangled, pair.signature),
        );
      }
      expect(await verify(suite, pair.publicKey, new Uint8Array(0))).toBe(false);
      expect(await verify(suite, new Uint8Array(0), pair.signature)).toBe(false);
      expect(await verify(suite, pair.publicKey, ecdsa(curve).signature)).toBe(false);
    });
  }

  it("answer as noble does for Ed448: good, mangled signatures and keys, wrong lengths", async () => {
    const pair = ed448Pair();
    expect(await verify(ED448_SUITE, pair.publicKey, pair.signature)).toBe(true);
    for (let at = 0; at < pair.signature.length; at += 5) {
      const mangled = flip(pair.signature, at);
      expect(await verify(ED448_SUITE, pair.publicKey, mangled), `signature bit at ${at}`).toBe(
        await nobleSays("Ed448", pair.publicKey, mangled),
      );
    }
    for (let at = 0; at < pair.publicKey.length; at += 5) {
      const mangled = flip(pair.publicKey, at);
      expect(await verify(ED448_SUITE, mangled, pair.signature), `key bit at ${at}`).toBe(
        await nobleSays("Ed448", mangled, pair.signature),
      );
    }
    expect(await verify(ED448_SUITE, pair.publicKey, pair.signature.slice(1))).toBe(false);
    expect(await verify(ED448_SUITE, pair.publicKey.slice(1), pair.signature)).toBe(false);
  });
});
