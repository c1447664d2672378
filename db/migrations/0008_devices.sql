-- Devices, roster-checked conversations and commit bundles (issue 14). A conversation member is a DID; each of
-- its devices is its own MLS leaf. The implicit device of a DID (credential identity: the bare DID) has device
-- id '' everywhere below and is never stored in `devices`: it is always live. Every column added here has a
-- constant default, so no table is rewritten under its lock; existing rows belong to the implicit device.

-- The devices a DID registered. A revoked device stays, so its id never comes back to life.
CREATE TABLE devices (
  did           text NOT NULL CHECK (did ~ '^did:[a-z]+:.+'),
  device_id     text NOT NULL CHECK (device_id ~ '^[A-Za-z0-9._-]{1,64}$'),
  name          text CHECK (char_length(name) <= 64),
  created_at    timestamptz NOT NULL,
  last_seen_at  timestamptz NOT NULL,
  revoked_at    timestamptz,
  PRIMARY KEY (did, device_id)
);

-- A key package belongs to the device its credential identity names; a last-resort one is handed out when
-- nothing else is left and never consumed (at most one per device and cipher suite).
ALTER TABLE key_packages ADD COLUMN device_id text NOT NULL DEFAULT '';
ALTER TABLE key_packages ADD COLUMN last_resort boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX key_packages_one_last_resort ON key_packages (owner_did, device_id, cipher_suite) WHERE last_resort;

-- Welcomes and read cursors are per device.
ALTER TABLE welcome_messages ADD COLUMN recipient_device text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX welcome_messages_live_device ON welcome_messages (convo_id, recipient_did, recipient_device)
  WHERE state IN ('available', 'in_flight');
DROP INDEX welcome_messages_live;
ALTER TABLE read_cursors ADD COLUMN device_id text NOT NULL DEFAULT '';
ALTER TABLE read_cursors DROP CONSTRAINT read_cursors_pkey;
ALTER TABLE read_cursors ADD PRIMARY KEY (convo_id, did, device_id);

-- The device that sent each message.
ALTER TABLE messages ADD COLUMN sender_device text NOT NULL DEFAULT '';

-- A conversation created with a GroupInfo is roster-checked: its latest GroupInfo and the devices in its MLS
-- tree are kept, and change only with an accepted commit, under the conversation lock.
ALTER TABLE conversations ADD COLUMN roster_checked boolean NOT NULL DEFAULT false;

CREATE TABLE group_infos (
  convo_id    text PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
  epoch       bigint NOT NULL CHECK (epoch >= 0),
  group_info  bytea NOT NULL CHECK (octet_length(group_info) >= 1),
  updated_at  timestamptz NOT NULL
);

-- The leaves of a roster-checked conversation's tree: one row per device, as the latest GroupInfo has them.
CREATE TABLE roster (
  convo_id       text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  did            text NOT NULL CHECK (did ~ '^did:[a-z]+:.+'),
  device_id      text NOT NULL,
  leaf_index     integer NOT NULL CHECK (leaf_index >= 0),
  -- The leaf's signature public key: a resync must come from the same key, and the signer of the next
  -- GroupInfo is checked against the leaf as it was.
  signature_key  bytea NOT NULL,
  added_epoch    bigint NOT NULL CHECK (added_epoch >= 0),
  PRIMARY KEY (convo_id, did, device_id),
  CONSTRAINT roster_convo_leaf_key UNIQUE (convo_id, leaf_index)
);
-- revokeDevice finds the conversations whose roster holds a device.
CREATE INDEX roster_by_device ON roster (did, device_id);

-- The last external join of each (conversation, device): REJOIN_COOLDOWN_SECONDS is counted from it.
CREATE TABLE external_joins (
  convo_id   text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  did        text NOT NULL,
  device_id  text NOT NULL,
  joined_at  timestamptz NOT NULL,
  PRIMARY KEY (convo_id, did, device_id)
);
