"""The work the worker runs: scoring, training, the model lifecycle, job execution and the queue,
encode batches, search indexes, evaluation, wrong-label detection."""
