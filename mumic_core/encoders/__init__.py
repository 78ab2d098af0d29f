"""Encoders and their weights: the open_clip factory, encoding images and prompts, the embedding
cache, contrastive pretraining and the starter recipe."""
