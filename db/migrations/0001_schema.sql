-- The whole schema of the delivery service. Integrity lives here, not only in code:
-- every invariant a concurrent request could break has a key, a unique index or a check.

CREATE TABLE conversations (
  id               text PRIMARY KEY,
  group_id         text NOT NULL UNIQUE CHECK (group_id ~ '^([0-9a-f]{2}){1,64}$'),
  creator_did      text NOT NULL CHECK (creator_did ~ '^did:[a-z]+:.+'),
  cipher_suite     text NOT NULL,
  epoch            bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  -- Ordering comes from this row: a writer locks it, takes next_seq and bumps it.
  next_seq         bigint NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
  next_event_seq   bigint NOT NULL DEFAULT 1 CHECK (next_event_seq >= 1),
  -- createdAt of the newest message: the next one is never earlier, even if the clock steps back.
  last_message_at  timestamptz,
  name             text CHECK (char_length(name) <= 256),
  description      text CHECK (char_length(description) <= 2048),
  created_at       timestamptz NOT NULL
);

CREATE TABLE members (
  convo_id   text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  did        text NOT NULL CHECK (did ~ '^did:[a-z]+:.+'),
  joined_at  timestamptz NOT NULL,
  left_at    timestamptz,
  CHECK (left_at IS NULL OR left_at >= joined_at),
  PRIMARY KEY (convo_id, did)
);
CREATE INDEX members_active_by_did ON members (did, convo_id) WHERE left_at IS NULL;

CREATE TABLE messages (
  id               text PRIMARY KEY,
  convo_id         text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  seq              bigint NOT NULL CHECK (seq >= 1),
  sender_did       text NOT NULL,
  message_type     text NOT NULL CHECK (message_type IN ('app', 'commit')),
  epoch            bigint NOT NULL CHECK (epoch >= 0),
  ciphertext       bytea NOT NULL CHECK (octet_length(ciphertext) >= 1),
  idempotency_key  text,
  created_at       timestamptz NOT NULL,
  CONSTRAINT messages_convo_seq_key UNIQUE (convo_id, seq),
  CONSTRAINT messages_sender_idempotency_key UNIQUE (sender_did, idempotency_key)
);
-- One commit per epoch per conversation: the database refuses a second winner.
CREATE UNIQUE INDEX messages_one_commit_per_epoch ON messages (convo_id, epoch) WHERE message_type = 'commit';
CREATE INDEX messages_created_at ON messages (created_at);

CREATE TABLE key_packages (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_did       text NOT NULL CHECK (owner_did ~ '^did:[a-z]+:.+'),
  cipher_suite    text NOT NULL,
  key_package     bytea NOT NULL CHECK (octet_length(key_package) >= 1),
  hash            text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  expires_at      timestamptz NOT NULL,
  created_at      timestamptz NOT NULL,
  handed_out_at   timestamptz,
  handed_out_to   text,
  consumed_at     timestamptz,
  CHECK ((handed_out_at IS NULL) = (handed_out_to IS NULL)),
  CONSTRAINT key_packages_owner_hash_key UNIQUE (owner_did, hash)
);
CREATE INDEX key_packages_available ON key_packages (owner_did, cipher_suite, expires_at) WHERE handed_out_at IS NULL;
CREATE INDEX key_packages_expires_at ON key_packages (expires_at);

CREATE TABLE welcome_messages (
  id                text PRIMARY KEY,
  convo_id          text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  recipient_did     text NOT NULL CHECK (recipient_did ~ '^did:[a-z]+:.+'),
  welcome           bytea NOT NULL CHECK (octet_length(welcome) >= 1),
  key_package_hash  text CHECK (key_package_hash ~ '^[0-9a-f]{64}$'),
  state             text NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'in_flight', 'consumed', 'expired')),
  created_at        timestamptz NOT NULL,
  fetched_at        timestamptz,
  confirmed_at      timestamptz,
  error_details     text CHECK (char_length(error_details) <= 1024),
  CHECK (state = 'available' OR state = 'expired' OR fetched_at IS NOT NULL),
  CHECK (state <> 'consumed' OR confirmed_at IS NOT NULL)
);
-- At most one live welcome per recipient per conversation.
CREATE UNIQUE INDEX welcome_messages_live ON welcome_messages (convo_id, recipient_did) WHERE state IN ('available', 'in_flight');
CREATE INDEX welcome_messages_by_state ON welcome_messages (state, fetched_at);

-- Exactly-once writes: the claim of a key, the handler's writes and the stored response
-- commit in one transaction, so a stored row always has its response.
CREATE TABLE idempotency_keys (
  caller_did    text NOT NULL,
  method        text NOT NULL,
  key           text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
  request_hash  text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
  status_code   integer CHECK (status_code BETWEEN 200 AND 499),
  response      text,
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,
  CHECK ((status_code IS NULL) = (response IS NULL)),
  PRIMARY KEY (caller_did, method, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- The stream of each conversation: event seq is taken from the conversation row like message seq,
-- so events commit in seq order and a cursor never skips one.
CREATE TABLE events (
  convo_id     text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  seq          bigint NOT NULL CHECK (seq >= 1),
  kind         text NOT NULL CHECK (kind IN ('message', 'membership')),
  message_seq  bigint,
  payload      jsonb,
  created_at   timestamptz NOT NULL,
  PRIMARY KEY (convo_id, seq),
  CHECK ((kind = 'message') = (message_seq IS NOT NULL))
);
CREATE INDEX events_created_at ON events (created_at);

-- Service-auth token ids seen before their expiry, shared by every instance.
CREATE TABLE seen_tokens (
  issuer_did  text NOT NULL,
  jti         text NOT NULL,
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (issuer_did, jti)
);
CREATE INDEX seen_tokens_expires_at ON seen_tokens (expires_at);

CREATE TABLE read_cursors (
  convo_id    text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  did         text NOT NULL,
  cursor      text NOT NULL CHECK (char_length(cursor) <= 256),
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (convo_id, did)
);
