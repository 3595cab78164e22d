"""The local stack's AWS resources come from template.yaml itself, created through CloudFormation."""

import os

import boto3
import pytest
import yaml

from local.stack import LocalStack

pytestmark = pytest.mark.integration


def test_records_table_has_the_template_keys_indexes_ttl_and_point_in_time_recovery(stack: LocalStack) -> None:
    # Given the stack created from template.yaml
    table = stack.physical_id("RecordsTable")
    dynamodb = stack.client("dynamodb")

    # When the table is described
    description = dynamodb.describe_table(TableName=table)["Table"]

    # Then it is the template's table: keys, its three indexes, TTL on expiresAt and PITR on
    assert {key["AttributeName"]: key["KeyType"] for key in description["KeySchema"]} == {"PK": "HASH", "SK": "RANGE"}
    indexes = {index["IndexName"]: index["KeySchema"] for index in description["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"GSI1", "GSI2", "GSI3"}
    assert [key["AttributeName"] for key in indexes["GSI2"]] == ["GSI2PK", "GSI2SK"]
    assert [key["AttributeName"] for key in indexes["GSI3"]] == ["GSI3PK", "GSI3SK"]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    backups = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_work_queues_hand_messages_to_their_dead_letter_queues_after_five_receives(stack: LocalStack) -> None:
    # Given the stack's queues
    sqs = stack.client("sqs")
    for queue, dead_letter_queue in (
        ("SyncQueue", "SyncDeadLetterQueue"),
        ("WritebackQueue", "WritebackDeadLetterQueue"),
    ):
        # When their attributes are read
        attributes = sqs.get_queue_attributes(QueueUrl=stack.physical_id(queue), AttributeNames=["All"])["Attributes"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.physical_id(dead_letter_queue), AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

        # Then the redrive policy is the template's
        redrive = yaml.safe_load(attributes["RedrivePolicy"])
        assert redrive == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    assert (
        sqs.get_queue_attributes(QueueUrl=stack.physical_id("SyncQueue"), AttributeNames=["VisibilityTimeout"])[
            "Attributes"
        ]["VisibilityTimeout"]
        == "5400"
    )


def test_documents_bucket_exists_and_plain_boto3_reaches_it(stack: LocalStack) -> None:
    # Given the documents bucket of the stack, and a client built the way the functions build theirs
    bucket = stack.outputs["DocumentsBucketName"]
    s3 = boto3.client("s3")

    # When an object is written and read back
    s3.put_object(Bucket=bucket, Key="invoices/1.pdf", Body=b"%PDF-1.7")

    # Then it is in the stack's bucket, on the local moto server
    assert s3.get_object(Bucket=bucket, Key="invoices/1.pdf")["Body"].read() == b"%PDF-1.7"
    assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url


def test_functions_get_the_environment_cloudformation_resolved(stack: LocalStack) -> None:
    # Given the sync function of the stack
    environment = stack.function_environment("SyncFunction")

    # Then references in its environment are resolved to the stack's own resources
    assert environment["RECORDS_TABLE_NAME"] == stack.physical_id("RecordsTable")
    assert environment["SYNC_QUEUE_URL"] == stack.physical_id("SyncQueue")
    assert environment["DOCUMENTS_BUCKET_NAME"] == stack.physical_id("DocumentsBucket")
    assert environment["SECRET_NAME_PREFIX"] == "payedge-local/"
    assert environment["STACK_KMS_KEY_ARN"].endswith(stack.physical_id("StackKey"))
    assert environment["POWERTOOLS_SERVICE_NAME"] == "sync"


def test_the_http_api_url_is_the_local_gateway(stack: LocalStack) -> None:
    # The OAuth redirect URIs are built from the API's URL, which locally is the gateway's.
    assert stack.outputs["ApiUrl"] == stack.api_url
    assert stack.function_environment("ConnectFunction")["API_BASE_URL"] == stack.api_url


def test_what_moto_does_not_create_is_listed_with_what_emulates_it(stack: LocalStack) -> None:
    # Given the stack created from template.yaml
    skipped = {resource.logical_id: resource for resource in stack.skipped}

    # Then the HTTP API and the dispatch schedule are skipped by moto and emulated locally
    assert skipped["HttpApi"].emulated_by is not None
    assert skipped["SyncFunctionDispatchDueConnections"].type == "AWS::Scheduler::Schedule"
    assert skipped["SyncFunctionDispatchDueConnections"].emulated_by is not None
    # and alarms are skipped, but not emulated
    assert skipped["SyncDeadLetterAlarm"].emulated_by is None
    # and the email subscription, whose condition is false without AlarmEmail, is neither
    assert "AlarmEmailSubscription" not in skipped
    created = {resource.logical_id for resource in stack.resources}
    assert {"RecordsTable", "SyncQueue", "DocumentsBucket", "StackKey", "ConnectFunctionRole"} <= created
    assert not created & set(skipped)


def test_a_console_event_runs_the_function_in_process(stack: LocalStack) -> None:
    # When the connect function is invoked with its documented console event
    result = stack.invoke("ConnectFunction", {"action": "list_providers"})

    # Then it answers like the deployed function would
    assert [provider["provider"] for provider in result["providers"]] == ["quickbooks", "xero", "sage"]
