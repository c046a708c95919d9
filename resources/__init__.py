"""framesearch's components, one package a stage of the pipeline, in the order data flows.

- :mod:`resources.frame_sources` - which videos exist and the pixels of each frame: local folders,
  S3 prefixes, manifests, video files (PyAV), and image decoding (``images``).
- :mod:`resources.embedding` - frames and text to vectors: model weights and provenance
  (``weights``, ``model_files``, ``offline``), precision and device, patch planning (``patches``),
  crops, and :class:`~resources.embedding.encoder.FrameEncoder`.
- :mod:`resources.checkpoints` - a video's vectors on disk or S3: the Parquet format, the store of
  manifests, chunks and published files, near-duplicate frames (``dedup``) and the chunked,
  resumable embedding of one video (``video_embedding``).
- :mod:`resources.vector_index` - the Qdrant index (embedded Edge or a server): schema and ids,
  layout, backends, fusion, search, and the follower that keeps it in step with the checkpoints.
- :mod:`resources.s3` - S3 URL parsing (every URL form, allow-lists) and the boto3 client.
- :mod:`resources.dagster_resources` - the Dagster resources that hand these to the pipeline's runs.
- :mod:`resources.settings` - environment variables to each stage's config, shared by the pipeline
  and the search service (the one module that spans stages).

Nothing here imports ``assets``, ``pipelines`` or ``search_service``; apart from
``dagster_resources``, nothing here imports Dagster or HTTP frameworks either.
"""
