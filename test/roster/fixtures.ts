/**
 * Shared set-up for the roster tests: devices registered straight in the `devices` table, roster-checked
 * conversations created through createConvo with a real GroupInfo, and readers for what the server stored.
 */
import type { Answer, Input, Output } from "mls-delivery-service/client";
import { expect } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { newDid } from "../helpers/context.js";
import { b64, identityOf, RosterGroup, SUITE, type Bundle, type Device, type Publish } from "../helpers/rosterGroup.js";
import { Api, ok, outcome, type Outcome, type Xrpc } from "../messaging/client.js";

export { newDid };

/** The typed client over an app; a raw `Xrpc` given by a caller is taken for its app. */
export const typed = (api: Api | Xrpc): Api => (api instanceof Api ? api : new Api(api.app));

/** Registers devices as the devices API would (a row in `devices`), revoked when asked. */
export async function register(db: Database, ...devices: (Device & { revoked?: boolean })[]): Promise<void> {
  for (const { did, deviceId, revoked } of devices) {
    if (deviceId === "") continue;
    await db.query(
      `INSERT INTO devices (did, device_id, name, created_at, last_seen_at, revoked_at) VALUES ($1, $2, NULL, now(), now(), $3)`,
      [did, deviceId, revoked ? new Date() : null],
    );
  }
}

export async function revoke(db: Database, device: Device): Promise<void> {
  await db.query(`UPDATE devices SET revoked_at = now() WHERE did = $1 AND device_id = $2`, [
    device.did,
    device.deviceId,
  ]);
}

export const device = (did: string, deviceId = ""): Device => ({ did, deviceId });

/** Publishes a device's key package as its owner would (a device that cannot publish is left to fail later). */
export const publisher =
  (api: Api | Xrpc): Publish =>
  async (device, keyPackage) => {
    await outcome(
      typed(api)
        .as(device.did)
        .publishKeyPackage({
          keyPackage,
          cipherSuite: SUITE,
          expires: new Date(Date.now() + 86_400_000).toISOString(),
        }),
    );
  };

/** A group in epoch 0 whose commits publish the key packages they add through `api`. */
export const newGroup = (api: Api | Xrpc, creator: Device) => RosterGroup.create(creator, { publish: publisher(api) });

/**
 * A group made by `creator` holding `others` (one commit, applied), and its roster-checked conversation created
 * from that GroupInfo; answers the conversation id.
 */
export async function rosterConvo(
  api: Api | Xrpc,
  creator: Device,
  others: Device[] = [],
  extra: Partial<Input<"createConvo">> = {},
): Promise<{ group: RosterGroup; convoId: string; reply: Answer<Output<"createConvo">> }> {
  const group = await newGroup(api, creator);
  let body: Partial<Input<"createConvo">> = {};
  if (others.length > 0) {
    const bundle = await group.commit(creator, { add: others });
    await bundle.apply();
    body = { welcomeMessage: bundle.welcome!, keyPackageHashes: bundle.keyPackageHashes };
  }
  const reply = await ok(
    typed(api)
      .as(creator.did)
      .createConvo({
        groupId: group.groupIdHex,
        cipherSuite: SUITE,
        groupInfo: await group.groupInfo(creator),
        ...(creator.deviceId && { deviceId: creator.deviceId }),
        ...body,
        ...extra,
      }),
  );
  return { group, convoId: reply.data.id, reply };
}

/** Alice (creator: phone and laptop) and Bob (phone) in a roster-checked conversation made by Alice's phone. */
export async function aliceAndBob(db: Database, api: Api | Xrpc) {
  const alice = newDid("alice");
  const bob = newDid("bob");
  const alicePhone = device(alice, "phone");
  const aliceLaptop = device(alice, "laptop");
  const bobPhone = device(bob, "phone");
  await register(db, alicePhone, aliceLaptop, bobPhone);
  const { group, convoId } = await rosterConvo(api, alicePhone, [aliceLaptop, bobPhone]);
  return { alice, bob, alicePhone, aliceLaptop, bobPhone, group, convoId };
}

/** A bundle's fields as processCommit, addMembers and leaveConvo take them, bytes as the typed client does. */
export const bundleFields = (bundle: Bundle, by: Device) => ({
  epoch: bundle.epoch,
  commit: bundle.commit,
  groupInfo: bundle.groupInfo,
  ...(bundle.welcome && { welcomeMessage: bundle.welcome }),
  ...(bundle.keyPackageHashes.length > 0 && { keyPackageHashes: bundle.keyPackageHashes }),
  ...(by.deviceId && { deviceId: by.deviceId }),
});

/** The raw JSON body of processCommit for a bundle (bytes as base64 text), for raw requests. */
export function bundleBody(convoId: string, bundle: Bundle, by: Device, extra: Record<string, unknown> = {}) {
  const { commit, groupInfo, welcomeMessage, ...rest } = bundleFields(bundle, by);
  return {
    convoId,
    ...rest,
    commit: b64(commit),
    groupInfo: b64(groupInfo),
    ...(welcomeMessage && { welcomeMessage: b64(welcomeMessage) }),
    ...extra,
  };
}

/** processCommit's input for a bundle, for the typed client. */
export function bundleInput(
  convoId: string,
  bundle: Bundle,
  by: Device,
  extra: Partial<Input<"processCommit">> = {},
): Input<"processCommit"> {
  return { convoId, ...bundleFields(bundle, by), ...extra };
}

/** Sends a bundle by `by` through processCommit (the typed client); on 200 the group moves on. */
export async function commitBundle(
  api: Api,
  convoId: string,
  bundle: Bundle,
  by: Device,
  extra: Partial<Input<"processCommit">> = {},
): Promise<Outcome<Output<"processCommit">>> {
  const reply = await outcome(api.as(by.did).processCommit(bundleInput(convoId, bundle, by, extra)));
  if (reply.status === 200) await bundle.apply();
  return reply;
}

/** The conversation's roster as identities, in leaf order. */
export async function storedRoster(db: Database, convoId: string): Promise<string[]> {
  const rows = await db.query<{ did: string; device_id: string }>(
    `SELECT did, device_id FROM roster WHERE convo_id = $1 ORDER BY leaf_index`,
    [convoId],
  );
  return rows.map((row) => identityOf({ did: row.did, deviceId: row.device_id }));
}

/** The group's devices as identities, in leaf order (what the roster must equal). */
export function groupRoster(group: RosterGroup): string[] {
  return [...group.members.values()].sort((a, b) => a.leafIndex - b.leafIndex).map(identityOf);
}

export async function expectRosterOf(db: Database, convoId: string, group: RosterGroup): Promise<void> {
  expect(await storedRoster(db, convoId)).toEqual(groupRoster(group));
}

/** Active member DIDs, sorted. */
export async function activeMembers(db: Database, convoId: string): Promise<string[]> {
  const rows = await db.query<{ did: string }>(
    `SELECT did FROM members WHERE convo_id = $1 AND left_at IS NULL ORDER BY did`,
    [convoId],
  );
  return rows.map((row) => row.did);
}

export interface StoredEvent {
  type: string;
  did: string;
  deviceId?: string;
  actor?: string;
  actorDevice?: string;
  epoch: number;
}

/** Membership event payloads in seq order. */
export async function membershipEvents(db: Database, convoId: string): Promise<StoredEvent[]> {
  const rows = await db.query<{ payload: StoredEvent }>(
    `SELECT payload FROM events WHERE convo_id = $1 AND kind = 'membership' ORDER BY seq`,
    [convoId],
  );
  return rows.map((row) => row.payload);
}

export async function epochOf(db: Database, convoId: string): Promise<number> {
  const [row] = await db.query<{ epoch: number }>(`SELECT epoch FROM conversations WHERE id = $1`, [convoId]);
  return Number(row!.epoch);
}

export async function liveWelcomes(db: Database, convoId: string): Promise<string[]> {
  const rows = await db.query<{ recipient_did: string; recipient_device: string }>(
    `SELECT recipient_did, recipient_device FROM welcome_messages
      WHERE convo_id = $1 AND state IN ('available', 'in_flight') ORDER BY recipient_did, recipient_device`,
    [convoId],
  );
  return rows.map((row) => identityOf({ did: row.recipient_did, deviceId: row.recipient_device }));
}
