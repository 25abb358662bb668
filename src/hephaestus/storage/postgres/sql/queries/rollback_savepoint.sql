ROLLBACK TO SAVEPOINT hephaestus_call
