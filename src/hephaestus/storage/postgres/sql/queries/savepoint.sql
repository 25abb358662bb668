-- Fence the writes made in a caller's transaction: on an error only they are undone.
SAVEPOINT hephaestus_call
