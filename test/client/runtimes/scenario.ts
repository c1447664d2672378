/**
 * The client's smoke scenario, run inside another runtime (Deno, workerd) against a real server: only the client
 * and Web APIs, no Node. It answers what it saw; the Node test checks it.
 */
import { createClient, XrpcClientError } from "../../../src/client/index.js";

export interface SmokeInput {
  service: string;
  alice: { did: string; token: string };
  bob: { did: string; token: string };
  /** Lowercase hex, fresh per run. */
  groupId: string;
}

export async function clientSmoke({ service, alice, bob, groupId }: SmokeInput) {
  const a = createClient({ service, token: () => alice.token });
  const b = createClient({ service, token: async () => bob.token });
  const suite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
  const convo = (await a.createConvo({ groupId, cipherSuite: suite, initialMembers: [bob.did] })).data;
  const ciphertext = new TextEncoder().encode("hello from the client");
  const first = await a.sendMessage({ convoId: convo.id, ciphertext, epoch: 0 }, { idempotencyKey: groupId });
  const again = await a.sendMessage({ convoId: convo.id, ciphertext, epoch: 0 }, { idempotencyKey: groupId });
  const read = (await b.getMessages({ convoId: convo.id })).data.messages;
  const refusal = await b.getEpoch({ convoId: "no-such-convo" }).catch((error: unknown) => error);

  const stop = new AbortController();
  let streamed: string | undefined;
  for await (const event of b.streamConvoEvents({ convoId: convo.id, cursor: 0 }, stop.signal)) {
    if (event.type !== "message") continue;
    streamed = new TextDecoder().decode(event.data.ciphertext);
    stop.abort();
  }
  return {
    members: convo.members.map((member) => member.did).sort(),
    seqs: [first.data.seq, again.data.seq],
    replayed: [first.replayed, again.replayed],
    read: read.map((message) => new TextDecoder().decode(message.ciphertext)),
    refusal: refusal instanceof XrpcClientError ? { status: refusal.status, error: refusal.error } : String(refusal),
    streamed,
  };
}
