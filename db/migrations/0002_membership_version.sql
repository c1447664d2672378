-- Bumped by every membership change. A one-statement send that waited for the conversation lock
-- re-checks the locked row's new version but reads members as of its own start (READ COMMITTED);
-- comparing this version with the one its snapshot saw tells it the members may have changed, and
-- it retries with a fresh snapshot instead of trusting a stale membership check.
ALTER TABLE conversations ADD COLUMN membership_version bigint NOT NULL DEFAULT 0;
