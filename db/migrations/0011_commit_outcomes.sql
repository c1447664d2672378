-- What the latest accepted commit of a roster-checked conversation did ({seq, added, removed}), kept beside the
-- GroupInfo it came with: the same bundle sent again (a client that lost the answer) gets the same answer while
-- that commit is still the latest. NULL for a GroupInfo that came with the conversation's creation.
ALTER TABLE group_infos ADD COLUMN outcome jsonb;
