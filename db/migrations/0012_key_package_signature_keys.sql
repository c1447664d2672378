-- The signature public key of each key package's leaf, stored at publishing (after its signatures are verified).
-- A roster-checked conversation accepts a new leaf for a device only with a key the device's owner published in a
-- key package, so no member can put a leaf naming someone else's device, with its own key, into the tree.
-- Packages stored before this have none (NULL) and cannot vouch for a leaf; they expire within 90 days.
ALTER TABLE key_packages ADD COLUMN signature_key bytea;
CREATE INDEX key_packages_by_signature_key ON key_packages (owner_did, device_id, signature_key)
  WHERE signature_key IS NOT NULL;
