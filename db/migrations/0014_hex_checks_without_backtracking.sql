-- The hex CHECKs of 0001 and 0007 as regular expressions cost PostgreSQL's regex engine dearly: measured on these
-- machines, `^([0-9a-f]{2}){1,64}$` took 30-42 µs a row (its capture group needs the backtracking matcher) and
-- `^[0-9a-f]{64}$` ~11 µs, against 0.5-3.5 µs for the length tests plus `!~ '[^0-9a-f]'` below. Every UPDATE of a
-- conversation re-checks group_id (each sendMessage bumps its conversation's next_seq) and every keyed write
-- checks its request_hash: together ~15% of the database's CPU per message in the send benchmark.
-- Each replacement accepts exactly what it replaces. NOT VALID skips a scan of the whole table under its exclusive
-- lock: every existing row already passed the check it replaces, and new rows are checked all the same.
ALTER TABLE conversations DROP CONSTRAINT conversations_group_id_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_group_id_check
  CHECK (char_length(group_id) BETWEEN 2 AND 128 AND char_length(group_id) % 2 = 0 AND group_id !~ '[^0-9a-f]') NOT VALID;

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_request_hash_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_request_hash_check
  CHECK (char_length(request_hash) = 64 AND request_hash !~ '[^0-9a-f]') NOT VALID;

ALTER TABLE key_packages DROP CONSTRAINT key_packages_hash_check;
ALTER TABLE key_packages ADD CONSTRAINT key_packages_hash_check
  CHECK (char_length(hash) = 64 AND hash !~ '[^0-9a-f]') NOT VALID;

ALTER TABLE welcome_messages DROP CONSTRAINT welcome_messages_key_package_hash_check;
ALTER TABLE welcome_messages ADD CONSTRAINT welcome_messages_key_package_hash_check
  CHECK (char_length(key_package_hash) = 64 AND key_package_hash !~ '[^0-9a-f]') NOT VALID;

ALTER TABLE welcome_payloads DROP CONSTRAINT welcome_payloads_hash_check;
ALTER TABLE welcome_payloads ADD CONSTRAINT welcome_payloads_hash_check
  CHECK (char_length(hash) = 64 AND hash !~ '[^0-9a-f]') NOT VALID;
