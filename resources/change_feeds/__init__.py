"""Change feeds: which videos changed since the last look, without listing the library.

An S3 bucket announces every object it stores or deletes as an event notification, delivered
into an SQS queue (:mod:`.sqs`); :mod:`.s3_events` reads those messages into the videos they
touch. A local folder has directory modification times (:mod:`.folders`). Delivery is at least once and out of order, so a message may repeat or be lost: a
repeat requests the same run (the run key carries the video's signature), and a loss is found by
the periodic full listing, which stays the reconcile path.
"""

from resources.change_feeds.batch import ChangeBatch, ChangeFeed
from resources.change_feeds.folders import FolderChangeFeed
from resources.change_feeds.s3_events import S3ObjectChange, object_changes, video_of_key
from resources.change_feeds.sqs import SqsChangeFeed

__all__ = ["ChangeBatch", "ChangeFeed", "FolderChangeFeed", "S3ObjectChange", "SqsChangeFeed", "object_changes", "video_of_key"]
