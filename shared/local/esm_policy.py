"""What a Lambda Kafka event-source mapping does with a batch its function failed: retry it, split it, give up.

Plain Python, no I/O: the emulator (``shared.local.emulator``) runs one ``BatchRun`` per polled batch and does what
it decides. Per setting of the deployment's ``EventSourceTemplate``, in the form "AWS documents X; the emulator
does Y; unverified: Z" (AWS pages: kafka-retry-configurations, kafka-on-failure-destination, kafka-on-failure,
and with-kinesis for what the Kafka pages leave out):

- ``MaximumRetryAttempts``. AWS documents: the retries after the first invocation; -1, the default, retries until
  the record expires; -1 together with an on-failure destination is capped at 10 retries. The emulator invokes a
  failed batch again up to that many times and then gives it up; unset or -1 without a destination retries
  forever (until retention deletes the records: the mirror's gap detector reports that). Errors of the mapping's
  own (polling, committing) are not function errors and count no retry, as AWS documents for Kinesis. Unverified:
  whether Lambda retries the very same batch or fetches again; the emulator keeps the batch while it retries it,
  and when its consumer is replaced the batch is read again with a fresh count.
- ``MaximumRecordAgeInSeconds``. AWS documents: the maximum age of a record Lambda sends to the function. The
  emulator takes a record's age as now minus its Kafka timestamp (create or log-append time, as the topic keeps
  it; records without a timestamp never age) and applies it when an invocation fails: the records over the age
  are given up with condition ``RecordAgeExceeded`` and the rest is retried. Unverified: whether Lambda also
  drops records that are already too old when first fetched (a mapping far behind, no error at all); whether it
  measures from the record timestamp or from when it fetched the record; the condition name (the Kafka pages
  show only the retry condition; ``RecordAgeExceeded`` is what Lambda writes for Kinesis and DynamoDB streams).
- ``BisectBatchOnFunctionError``. AWS documents for Kafka: on a function error the batch is split in two and each
  half retried; for Kinesis and DynamoDB it adds that a split does not count towards the retry quota. The
  emulator splits every failed batch of two or more records, first half before second so each partition keeps
  its order, without counting a retry; each half is a new batch with a retry count of its own, so retries are
  spent on single records only, and a poison record is isolated in about log2(batch size) invocations.
  Unverified for Kafka: that a split does not count as a retry, whether a half inherits the retries its parent
  used, and whether Lambda retries a batch before it splits it. This reading gives up as few records as possible.
- Given-up records are committed past (the mapping moves on to the next records) and sent to the on-failure
  destination, if one is set (``shared.local.failure_destinations``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from shared.aws.config_source import EventSourceTemplate
from shared.aws.esm_event import SourceRecord

# Lambda's cap on "retry forever" when an on-failure destination is set (kafka-on-failure-destination).
RETRIES_WITH_DESTINATION = 10
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class ErrorHandling:
    """A mapping's error-handling settings as Lambda applies them (-1 and unset resolved)."""

    max_retries: int | None = None  # None: until the records expire
    max_record_age_ms: int | None = None  # None: records never get too old
    bisect: bool = False

    @classmethod
    def of(cls, template: EventSourceTemplate) -> ErrorHandling:
        retries = template.max_retry_attempts
        if retries is None or retries == -1:
            retries = RETRIES_WITH_DESTINATION if template.on_failure else None
        age = template.max_record_age_seconds
        return cls(retries, None if age is None or age == -1 else age * 1000, template.bisect_batch_on_error)


@dataclass(frozen=True)
class GiveUp:
    """Records the mapping moves past although the function never took them, and why."""

    records: tuple[SourceRecord, ...]
    condition: str  # RETRIES_EXHAUSTED or RECORD_AGE_EXCEEDED
    invocations: int  # how often these records were sent to the function (the metadata's approximateInvokeCount)


@dataclass
class _Batch:
    records: list[SourceRecord]
    invocations: int = 0  # including those of the batch it was split from
    retries: int = 0


class BatchRun:
    """One polled batch through the mapping's error handling, until every record is delivered or given up.

    ``next`` names the records of the next invocation; the caller reports its outcome with ``succeeded`` or
    ``failed`` and may commit ``committable`` after either.
    """

    def __init__(self, records: Sequence[SourceRecord], handling: ErrorHandling) -> None:
        self.handling = handling
        self._queue: deque[_Batch] = deque([_Batch(list(records))] if records else [])
        self._ends: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r.topic, r.partition)
            self._ends[key] = max(self._ends.get(key, 0), r.offset + 1)

    def next(self) -> list[SourceRecord] | None:
        """The records of the next invocation; None once every record is delivered or given up."""
        return self._queue[0].records if self._queue else None

    def succeeded(self) -> None:
        self._queue.popleft()

    def failed(self, now_ms: int) -> list[GiveUp]:
        """The invocation of ``next()`` raised: what is given up now (the rest is retried or split)."""
        head = self._queue[0]
        head.invocations += 1
        given_up: list[GiveUp] = []
        age = self.handling.max_record_age_ms
        if age is not None:
            oldest_allowed = now_ms - age  # a timestamp of -1 (none) never ages
            expired = [r for r in head.records if 0 <= r.timestamp < oldest_allowed]
            if expired:
                given_up.append(GiveUp(tuple(expired), RECORD_AGE_EXCEEDED, head.invocations))
                head.records = [r for r in head.records if not 0 <= r.timestamp < oldest_allowed]
        if not head.records:
            self._queue.popleft()
        elif self.handling.bisect and len(head.records) > 1:
            self._queue.popleft()
            middle = len(head.records) // 2
            halves = (head.records[:middle], head.records[middle:])
            self._queue.extendleft(_Batch(half, head.invocations) for half in reversed(halves))
        elif self.handling.max_retries is not None and head.retries >= self.handling.max_retries:
            self._queue.popleft()
            given_up.append(GiveUp(tuple(head.records), RETRIES_EXHAUSTED, head.invocations))
        else:
            head.retries += 1
        return given_up

    def committable(self) -> dict[tuple[str, int], int]:
        """Per partition, the offset the group may be committed to: every record before it is delivered or given up."""
        pending: dict[tuple[str, int], int] = {}
        for batch in self._queue:
            for r in batch.records:
                key = (r.topic, r.partition)
                pending[key] = min(pending.get(key, r.offset), r.offset)
        return {key: pending.get(key, end) for key, end in self._ends.items()}
