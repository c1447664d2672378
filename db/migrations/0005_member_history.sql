-- Where each membership starts: a member reads messages from seq joined_seq, events from
-- joined_event_seq and commits from epoch joined_epoch on (the conversation's next_seq,
-- next_event_seq and epoch when they last joined, taken under the conversation lock), never what
-- was sent while they were away. Existing members keep the whole history, as before.
-- No default: every insert must say where the membership starts.
ALTER TABLE members ADD COLUMN joined_seq bigint NOT NULL DEFAULT 1 CHECK (joined_seq >= 1);
ALTER TABLE members ADD COLUMN joined_event_seq bigint NOT NULL DEFAULT 1 CHECK (joined_event_seq >= 1);
ALTER TABLE members ADD COLUMN joined_epoch bigint NOT NULL DEFAULT 0 CHECK (joined_epoch >= 0);
ALTER TABLE members ALTER COLUMN joined_seq DROP DEFAULT;
ALTER TABLE members ALTER COLUMN joined_event_seq DROP DEFAULT;
ALTER TABLE members ALTER COLUMN joined_epoch DROP DEFAULT;
