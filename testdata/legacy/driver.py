"""Drives the unmodified watchbot-progress-py library for wp's mixed-fleet
tests (backends/dynamodb/fleet_test.go). Usage: driver.py OP ARGS...

Environment: PYTHONPATH holds the library; ProgressTable (a table ARN) and
WorkTopic as watchbot sets them; WP_TEST_DYNAMODB_ENDPOINT and
WP_TEST_SNS_ENDPOINT are passed to boto3 as endpoint_url (Debian's boto3
1.26 ignores AWS_ENDPOINT_URL_*), with AWS_REGION and the fake credentials.

Prints one JSON line: the call's result, or {"error": TYPE, "message": ...}
with exit status 1 when the call raised.
"""
import json
import os
import sys
from decimal import Decimal

import boto3.session

ENDPOINTS = {
    "dynamodb": os.environ["WP_TEST_DYNAMODB_ENDPOINT"],
    "sns": os.environ["WP_TEST_SNS_ENDPOINT"],
}


def _with_endpoint(method):
    def wrapped(self, service_name, *args, **kwargs):
        if service_name in ENDPOINTS:
            kwargs.setdefault("endpoint_url", ENDPOINTS[service_name])
        return method(self, service_name, *args, **kwargs)
    return wrapped


# The library calls boto3.resource('dynamodb') and Session().client('sns'):
# both go through these two methods.
boto3.session.Session.client = _with_endpoint(boto3.session.Session.client)
boto3.session.Session.resource = _with_endpoint(boto3.session.Session.resource)

from watchbot_progress import Part, create_job  # noqa: E402
from watchbot_progress.backends.dynamodb import DynamoProgress  # noqa: E402


class Failure(Exception):
    """The user's code failing with a fail_job_on exception."""


def plain(v):
    if isinstance(v, Decimal):
        return int(v) if v == int(v) else float(v)
    if isinstance(v, (set, list, tuple)):
        return sorted(plain(x) for x in v)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def main(op, args):
    progress = DynamoProgress()
    if op == "create":  # create JOBID N [METADATA_JSON]: create_job publishes N map messages
        meta = json.loads(args[2]) if len(args) > 2 else None
        parts = [{"n": i} for i in range(int(args[1]))]
        return create_job(parts, jobid=args[0], metadata=meta, progress=progress, workers=2)
    if op == "part":  # part JOBID PARTID [fail]: a worker's Part block (prints "ran" on stderr when the block runs)
        ran = False
        fail_job_on = [Failure] if "fail" in args[2:] else []
        with Part(args[0], int(args[1]), progress=progress, fail_job_on=fail_job_on):
            ran = True
            print("ran", file=sys.stderr, flush=True)
        return {"ran": ran}
    if op == "status":
        return progress.status(args[0])
    if op == "pending":
        return progress.list_pending_parts(args[0])
    if op == "ls":
        return list(progress.list_jobs())
    if op == "ls-ids":
        return sorted(progress.list_jobs(status=False))
    if op == "complete":
        return progress.complete_part(args[0], int(args[1]))
    if op == "fail":
        progress.fail_job(args[0], args[1])
        return None
    if op == "set-metadata":
        progress.set_metadata(args[0], json.loads(args[1]))
        return None
    raise SystemExit("unknown op " + op)


if __name__ == "__main__":
    try:
        out = main(sys.argv[1], sys.argv[2:])
    except Exception as e:  # report what the library raised, and fail
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        sys.exit(1)
    print(json.dumps(plain(out)))
