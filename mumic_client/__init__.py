"""A small Python client of the MuMIC Studio HTTP API, for pipelines: push images, pull labels
changed since the last pull, train, wait for a job. It needs only ``httpx``.

    from mumic_client import MumicClient
    client = MumicClient("http://127.0.0.1:8000", token)
    client.push_images(Path("new").glob("*.jpg"))
    images, as_of = client.pull_labels(since=last_as_of)
    job = client.wait(client.train(mode="head"))

The same from a shell: ``python -m mumic_client --help``.
"""

from mumic_client.client import ApiError, ImageLabels, Job, Label, MumicClient, UploadedFile

__all__ = ["ApiError", "ImageLabels", "Job", "Label", "MumicClient", "UploadedFile"]
