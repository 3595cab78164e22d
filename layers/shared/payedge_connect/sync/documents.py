"""Invoice documents: fetched from the provider into the private bucket, served by short-lived URLs.

Objects carry no metadata but their content type: file names and people stay out of S3 metadata.
"""

from typing import TYPE_CHECKING
from urllib.parse import quote

import boto3

from payedge_connect.models import Payable
from payedge_connect.storage import RecordsStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from payedge_connect.providers.base import AccountingConnector
    from payedge_connect.providers.http import ProviderApi

PRESIGNED_URL_SECONDS = 300


class DocumentStore:
    def __init__(self, bucket: str, store: RecordsStore, *, s3: "S3Client | None" = None) -> None:
        self._bucket = bucket
        self._store = store
        self._s3 = s3

    @property
    def s3(self) -> "S3Client":
        if self._s3 is None:
            self._s3 = boto3.client("s3")
        return self._s3

    def fetch_into_bucket(self, connector: "AccountingConnector", api: "ProviderApi", payable: Payable) -> Payable:
        """Copy the bill's document into the bucket once; returns the payable with its object key."""
        from payedge_connect.providers.base import DocumentRef  # noqa: PLC0415 - the provider side, on first use

        document = payable.document
        if document is None:
            raise ValueError(f"bill {payable.bill_id} has no document")
        if document.object_key:
            return payable
        content = connector.download_document(
            api,
            payable.bill_id,
            DocumentRef(
                provider_document_id=document.provider_document_id,
                file_name=document.file_name,
                content_type=document.content_type,
                size_bytes=document.size_bytes,
            ),
        )
        key = f"{payable.connection_id}/{payable.bill_id}/{document.provider_document_id}"
        self.s3.put_object(Bucket=self._bucket, Key=key, Body=content, ContentType=document.content_type)
        stored = payable.model_copy(
            update={"document": document.model_copy(update={"object_key": key, "size_bytes": len(content)})}
        )
        self._store.payables.put_payables([stored], previous={payable.bill_id: payable.status.value})
        return stored

    def presigned_url(self, payable: Payable) -> str:
        """A link that works for a few minutes, offering the file under its original name."""
        document = payable.document
        if document is None or document.object_key is None:
            raise ValueError(f"bill {payable.bill_id} has no stored document")
        safe_name = document.file_name.replace('"', "")
        return self.s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": document.object_key,
                "ResponseContentType": document.content_type,
                "ResponseContentDisposition": f"inline; filename*=UTF-8''{quote(safe_name, safe='')}",
            },
            ExpiresIn=PRESIGNED_URL_SECONDS,
        )
