-- sendMessage stores MLS proposals as well as application messages, as message_type 'proposal'.
-- NOT VALID skips a scan of the whole table under its exclusive lock: every existing row already
-- passed the narrower check this one replaces, and new rows are checked all the same.
ALTER TABLE messages DROP CONSTRAINT messages_message_type_check;
ALTER TABLE messages ADD CONSTRAINT messages_message_type_check
  CHECK (message_type IN ('app', 'commit', 'proposal')) NOT VALID;
