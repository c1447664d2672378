-- Welcome lifecycle, key package reservations and short cleanup transactions (issue 13).

-- getWelcome's and confirmWelcome's 404/410 answers look up a recipient's welcomes in any state.
CREATE INDEX welcome_messages_by_recipient ON welcome_messages (convo_id, recipient_did, created_at);
-- Cleanup expires `available` welcomes past WELCOME_TTL_SECONDS ...
CREATE INDEX welcome_messages_available_created ON welcome_messages (created_at) WHERE state = 'available';
-- ... and deletes retired ones past retention by this very expression.
CREATE INDEX welcome_messages_retired_at ON welcome_messages ((coalesce(confirmed_at, fetched_at, created_at)))
  WHERE state IN ('consumed', 'expired');
-- A key package a welcome was built from is used: it is never handed back as a reservation.
CREATE INDEX welcome_messages_by_key_package ON welcome_messages (recipient_did, key_package_hash)
  WHERE key_package_hash IS NOT NULL;

-- A caller's reservations: the packages of an owner handed to that caller, newest first.
CREATE INDEX key_packages_reserved ON key_packages (owner_did, handed_out_to, handed_out_at)
  WHERE handed_out_to IS NOT NULL AND consumed_at IS NULL;

-- One runner at a time for jobs that work in many short transactions (cleanup): the holder renews
-- its lease as it goes; a crashed holder's lease lapses.
CREATE TABLE job_leases (
  name        text PRIMARY KEY,
  holder      text NOT NULL,
  expires_at  timestamptz NOT NULL
);
