-- revokeDevice retires a device's live welcomes in every conversation: find them without scanning all welcomes.
CREATE INDEX welcome_messages_live_by_device ON welcome_messages (recipient_did, recipient_device)
  WHERE state IN ('available', 'in_flight');
