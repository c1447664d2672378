-- A key's one message is guaranteed by its idempotency record (primary key (caller_did, method, key),
-- written in the same transaction as the message), which lives exactly as long as the key: once it
-- has expired, the same key is a new action (API rule 6). The old backstop, one message per
-- (sender, key) for the messages' whole retention, outlived the record and turned such a new action
-- into a silent no-op answered with an earlier message. The key stays on the message, for
-- operators tracing a client's retries, without a constraint.
ALTER TABLE messages DROP CONSTRAINT messages_sender_idempotency_key;
