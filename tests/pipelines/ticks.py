"""Sensors evaluated as ``dagster-daemon`` evaluates them, and the S3 -> SQS event wiring the
change feed reads: for the tests and the benchmarks."""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG, RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.utils import make_new_run_id

from assets.videos import VIDEOS_PARTITIONS


class DaemonTicks:
    """Ticks of ``sensor`` on ``instance``: each with the cursor the last tick left (a tick that
    returns none keeps it, as the daemon does), its partition requests applied to the instance and
    its run requests recorded as runs not yet started - less those whose run key this sensor already has a
    run for, as the daemon skips them."""

    def __init__(self, sensor: Any, instance: dg.DagsterInstance, resources: dict[str, Any]) -> None:
        self.sensor, self.instance, self.resources = sensor, instance, resources
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources) as context:
            result = self.sensor(context)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(VIDEOS_PARTITIONS, list(request.partition_keys))
        for run in result.run_requests or []:
            tags = {**run.tags, RUN_KEY_TAG: str(run.run_key), SENSOR_NAME_TAG: self.sensor.name}
            if run.partition_key is not None:
                tags[PARTITION_NAME_TAG] = run.partition_key
            if run.run_key and self.instance.get_runs_count(dg.RunsFilter(tags={RUN_KEY_TAG: run.run_key, SENSOR_NAME_TAG: self.sensor.name})):
                continue
            self.instance.add_run(dg.DagsterRun(
                job_name="video_pipeline", run_id=make_new_run_id(), tags=tags, run_config=run.run_config, status=dg.DagsterRunStatus.NOT_STARTED,
            ))
        if result.cursor is not None:
            self.cursor = result.cursor
        return result


def send_events_to_queue(s3: Any, sqs: Any, bucket: str, queue_url: str) -> None:
    """Point ``bucket``'s event notifications (objects created and removed) at the SQS queue, as
    production does with ``put-bucket-notification-configuration``; S3 then sends a test event."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
