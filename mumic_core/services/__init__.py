"""What pages, the CLI and other clients call for an action: each orchestrates the store and the
pipeline and returns plain data."""
