-- Key packages stored before 0012 have no signature key; cleanup reads and verifies them once, a batch at a time,
-- and keys or deletes each (src/services/keyPackageSignatureKeys.ts). This index lists those still to do, so a run
-- finds them without scanning every package (and, once none are left, finds none at no cost).
CREATE INDEX key_packages_without_signature_key ON key_packages (id) WHERE signature_key IS NULL;
