"""The store and its services: images, classes, labels, the review queue, leases, accounts,
model versions, settings, backup, storage and job records (database and files)."""
