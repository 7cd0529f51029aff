"""CloudFormation's custom-resource protocol, for a function that is its own service token (no Provider framework).

CloudFormation invokes the function with a request (``RequestType`` Create, Update or Delete, the resource's
properties, and a pre-signed ``ResponseURL``) and waits until the function PUTs its answer there. A function that
never answers holds the stack until the resource's ``ServiceTimeout``, so ``answer`` is called on every path.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(service="smm-config-sync")

SUCCESS = "SUCCESS"
FAILED = "FAILED"
_REQUEST_KEYS = ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId", "ResourceProperties")
_REASON_LIMIT = 3000  # CloudFormation shows the reason in the stack events; the whole response must stay under 4 KB
_ATTEMPTS = 3


def is_request(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` comes from CloudFormation rather than from the schedule."""
    return all(key in event for key in _REQUEST_KEYS)


@dataclass(frozen=True)
class Request:
    """One custom-resource request."""

    kind: str  # Create, Update or Delete
    properties: Mapping[str, Any]
    old_properties: Mapping[str, Any] = field(default_factory=dict)  # Update only

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> Request:
        return cls(event["RequestType"], event["ResourceProperties"], event.get("OldResourceProperties") or {})


def answer(event: Mapping[str, Any], status: str, reason: str, physical_id: str) -> None:
    """PUT the response CloudFormation waits for; retried, since a lost answer holds the stack for an hour."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:_REASON_LIMIT],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": {},
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            logger.info("answered CloudFormation", extra={"status": status, "reason": reason[:_REASON_LIMIT]})
            return
        except (urllib.error.URLError, OSError) as exc:
            logger.warning("answering CloudFormation failed", extra={"attempt": attempt, "error": str(exc)})
            if attempt == _ATTEMPTS:
                raise
            time.sleep(attempt)
