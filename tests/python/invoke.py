"""Runs handler.handler once, as the Lambda runtime would: the invocation event (JSON) from
the file named by the first argument and a minimal Lambda context. Writes the handler's output
(JSON) to the file named by the second argument: stdout is left to the SDK's logs.

The checkpoint client is boto3's, aimed at the emulator with AWS_ENDPOINT_URL_LAMBDA.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from handler import handler  # noqa: E402


class FakeLambdaContext:
    aws_request_id = "python-sdk-test"
    log_group_name = None
    log_stream_name = None
    function_name = "python-sdk-test"
    memory_limit_in_mb = "128"
    function_version = "$LATEST"
    invoked_function_arn = None
    tenant_id = None
    client_context = None
    identity = None

    def __init__(self, budget_ms=120_000):
        self._deadline = time.monotonic() + budget_ms / 1000

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def log(self, msg):
        sys.stderr.write(str(msg))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: invoke.py EVENT.json OUTPUT.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        event = json.load(f)
    output = handler(event, FakeLambdaContext())
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(output, f)


if __name__ == "__main__":
    main()
