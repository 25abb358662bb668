-- Receive the storage's notifications on this connection.
LISTEN {channel}
