-- getKeyPackages hands out one key package per device (issue 14): its lookups are per (owner, device).

-- The oldest package of a device never handed out (and revokeDevice's delete of those it leaves).
CREATE INDEX key_packages_device_available ON key_packages (owner_did, device_id, created_at, id)
  WHERE handed_out_at IS NULL;

-- A caller's reservations of one device's packages, newest first. Consumed packages stay in it: they count
-- towards the PACKAGES_PER_RESERVATION a caller may take per reservation.
CREATE INDEX key_packages_device_reserved ON key_packages (owner_did, device_id, handed_out_to, handed_out_at)
  WHERE handed_out_to IS NOT NULL;

-- Superseded by key_packages_device_reserved (its consumed_at predicate never matched the reservation lookup).
DROP INDEX key_packages_reserved;
