"""The Dagster resources: each owns one external system's client for the pipeline's runs.

- ``encoder`` - :class:`EncoderResource`, the OpenCLIP encoder, loaded once per run process;
- ``stores`` - :class:`FrameSourceResource` (S3 or a local folder), :class:`FrameEventsResource`
  (the bucket's event queue), :class:`CheckpointStoreResource`,
  :class:`IndexResource` and :class:`FramesS3Resource` (dagster-aws's S3 resource with timeouts);
- ``from_env`` - :func:`pipeline_resources_from_env`, the code location's resources filled in from
  the environment.

The components they wrap live in the stage packages beside this one and know nothing of Dagster.
"""

from resources.dagster_resources.encoder import EncoderResource
from resources.dagster_resources.from_env import pipeline_resources_from_env
from resources.dagster_resources.stores import (
    CheckpointStoreResource,
    FrameEventsResource,
    FrameSourceResource,
    FramesS3Resource,
    IndexResource,
    s3_resource_from_env,
)

__all__ = [
    "CheckpointStoreResource",
    "EncoderResource",
    "FrameEventsResource",
    "FrameSourceResource",
    "FramesS3Resource",
    "IndexResource",
    "pipeline_resources_from_env",
    "s3_resource_from_env",
]
