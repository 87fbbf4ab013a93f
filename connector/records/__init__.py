"""Run records: what a run writes to the audit trail, and how it is read back.

One module writes and reads them (:mod:`connector.records.run`): the ``plan`` record
(with what re-renders the run's report), one ``operation`` record per action, one
``decision`` record per changed decision, the closing ``run`` record, and the records
crash recovery writes. The runs (connector.runs) write them; the report
(connector.report) and anyone else reads them through :func:`read_run`. Pure: no I/O.
"""

from connector.records.run import (
    RecordedOutcome,
    RunNotFoundError,
    RunRecords,
    decision_digest,
    decision_record,
    interrupted_run_record,
    operation_record,
    plan_record,
    read_run,
    recovered_operation_record,
    run_record,
)

__all__ = [
    "RecordedOutcome",
    "RunNotFoundError",
    "RunRecords",
    "decision_digest",
    "decision_record",
    "interrupted_run_record",
    "operation_record",
    "plan_record",
    "read_run",
    "recovered_operation_record",
    "run_record",
]
