-- Each distinct Welcome is stored once, however many recipients it has (a createConvo with 99 members
-- and a 1.4 MB Welcome used to write 99 copies). Rows stored before this keep their own bytes in
-- welcome_messages.welcome; new rows reference a payload instead. Nothing here rewrites welcome_messages.

CREATE TABLE welcome_payloads (
  hash     text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
  welcome  bytea NOT NULL CHECK (octet_length(welcome) >= 1),
  -- Last time a welcome row was stored with it; cleanup keeps a payload this recent even when unreferenced,
  -- so a writer reusing it never races the delete.
  used_at  timestamptz NOT NULL
);
-- Cleanup deletes unreferenced payloads oldest first.
CREATE INDEX welcome_payloads_used_at ON welcome_payloads (used_at);

ALTER TABLE welcome_messages ALTER COLUMN welcome DROP NOT NULL;
ALTER TABLE welcome_messages ADD COLUMN payload_hash text;
-- NOT VALID: every existing row has a NULL payload_hash and its own bytes, so the table is not scanned
-- under this lock; new and updated rows are checked.
ALTER TABLE welcome_messages ADD CONSTRAINT welcome_messages_payload_hash_fkey
  FOREIGN KEY (payload_hash) REFERENCES welcome_payloads (hash) NOT VALID;
ALTER TABLE welcome_messages ADD CONSTRAINT welcome_messages_has_bytes
  CHECK (welcome IS NOT NULL OR payload_hash IS NOT NULL) NOT VALID;
-- The references to a payload: cleanup's "still referenced?" and the foreign key's check on delete.
CREATE INDEX welcome_messages_by_payload ON welcome_messages (payload_hash) WHERE payload_hash IS NOT NULL;
