"""A video's vectors, checkpointed: the durable record the index is a view of.

- :mod:`.format` - one Parquet row per frame (global vector, patch vectors and boxes), its file
  metadata and content version, atomic writes.
- :mod:`.store` - where checkpoints live (a local folder or S3): manifests, resumable work chunks,
  published files, listing and deletion.
- :mod:`.dedup` - near-duplicate consecutive frames, dropped before encoding.
- :mod:`.video_embedding` - one video through the encoder into resumable chunks, then published.
"""
