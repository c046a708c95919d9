"""An SQS queue of S3 event notifications, read as the set of videos that changed."""

from __future__ import annotations

import time
from typing import Any

from resources.change_feeds.batch import ChangeBatch
from resources.change_feeds.s3_events import object_changes, video_of_key

RECEIVE_BATCH = 10  # SQS's most messages per ReceiveMessage and per DeleteMessageBatch


class SqsChangeFeed:
    """The videos under ``s3://bucket/prefix`` that S3 events in ``queue_url`` announce.

    ``client`` is a boto3 SQS client. Reading does not delete: :meth:`ack` does, after the caller
    has acted on the batch, so a tick that fails leaves its messages to be delivered again (after
    the queue's visibility timeout).
    """

    def __init__(self, client: Any, queue_url: str, bucket: str, prefix: str) -> None:
        self._client, self.queue_url, self.bucket, self.prefix = client, queue_url, bucket, prefix

    def poll(self, *, max_messages: int = 10_000, budget_s: float = 10.0) -> ChangeBatch:
        """Read until the queue answers empty, ``max_messages`` were read or ``budget_s`` passed."""
        batch = ChangeBatch()
        deadline = time.monotonic() + budget_s
        while batch.messages < max_messages and time.monotonic() < deadline:
            answer = self._client.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(RECEIVE_BATCH, max_messages - batch.messages), WaitTimeSeconds=0,
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                batch.messages += 1
                batch.receipts.append(message["ReceiptHandle"])
                try:
                    changes = object_changes(message.get("Body", ""))
                except ValueError:
                    batch.unreadable += 1
                    continue
                for change in changes:
                    video_id = video_of_key(change.key, self.prefix) if change.bucket == self.bucket else None
                    if video_id is None:
                        batch.elsewhere += 1
                    else:
                        batch.video_ids.add(video_id)
        return batch

    def ack(self, batch: ChangeBatch) -> None:
        """Delete the batch's messages (handled: a repeat would only request the same runs again)."""
        for start in range(0, len(batch.receipts), RECEIVE_BATCH):
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(batch.receipts[start:start + RECEIVE_BATCH])]
            self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
