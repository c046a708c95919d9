"""S3 event notifications, as SQS delivers them, read into object changes (pure: no I/O).

A message body is an S3 event (``{"Records": [...]}``), the same wrapped by SNS (``{"Type":
"Notification", "Message": "<the event as a string>"}``) when a topic fans out to the queue, or
the ``s3:TestEvent`` S3 sends when a notification is configured. Keys arrive URL-encoded, with
``+`` for a space (``videos%2F7%2Fframe+1.png``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

from resources.frame_sources.manifests import _video_id


@dataclass(frozen=True)
class S3ObjectChange:
    """One object stored (``created``) or deleted in ``bucket``."""

    bucket: str
    key: str
    created: bool


def object_changes(body: str) -> list[S3ObjectChange]:
    """The object changes a message body announces; ``[]`` for a test event or another message.

    Raises ValueError for a body that is not JSON, or records without a bucket and key: the caller
    counts it and moves on (the reconcile finds what it meant).
    """
    message = json.loads(body)
    if isinstance(message, dict) and message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        message = json.loads(message["Message"])  # SNS in front of the queue
    if not isinstance(message, dict) or "Records" not in message:
        return []  # s3:TestEvent, or a message that is no S3 event
    changes = []
    for record in message["Records"]:
        name = str(record.get("eventName", ""))
        if not name.startswith(("ObjectCreated:", "ObjectRemoved:")):
            continue  # restores, replication, lifecycle transitions: the object's bytes are the same
        try:
            s3 = record["s3"]
            changes.append(S3ObjectChange(s3["bucket"]["name"], unquote_plus(s3["object"]["key"]), name.startswith("ObjectCreated:")))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"an S3 event record without bucket and key: {exc!r}") from None
    return changes


def video_of_key(key: str, prefix: str) -> int | None:
    """The video a key under the library's ``prefix`` belongs to (its first folder below the
    prefix, ``<prefix><video_id>/...``); None for a key outside the library or not in a video folder."""
    if not key.startswith(prefix):
        return None
    folder, slash, _ = key[len(prefix):].partition("/")
    if not slash:
        return None
    try:
        return _video_id(folder)
    except ValueError:  # an id out of range: not a video this library can hold
        return None
