"""A durable handler written with the official Python SDK, run against the crate's emulator
by tests/emulator/python_sdk.rs (through invoke.py).

It covers steps, a map, a parallel of two branches, a wait, a callback answered through the
emulator, and a final result padded to `pad_to` bytes of JSON: past the 6 MiB - 50 byte
response limit the SDK checkpoints it as an EXECUTION SUCCEED update and returns an empty
Result.
"""

import json

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


def double(item):
    return item * 2


def map_item(ctx, item, index, items):
    return ctx.step(lambda _: double(item), name=f"double-{index}")


def branch_sum(items):
    def branch(ctx):
        return ctx.step(lambda _: sum(items), name="sum")

    return branch


def branch_greeting(name):
    def branch(ctx):
        return ctx.step(lambda _: f"hello {name}", name="greet")

    return branch


@durable_execution
def handler(event, context: DurableContext):
    items = event["items"]
    name = event["name"]
    first = context.step(lambda _: len(items), name="count")
    doubled = context.map(items, map_item, name="double-all").get_results()
    both = context.parallel(
        [branch_sum(items), branch_greeting(name)], name="two-branches"
    ).get_results()
    context.wait(Duration.from_seconds(3), name="pause")
    callback = context.create_callback(name="approval")
    approval = callback.result()
    last = context.step(lambda _: f"{name}:{approval}", name="finish")
    summary = {
        "count": first,
        "doubled": doubled,
        "parallel": both,
        "callback": approval,
        "finish": last,
    }
    pad_to = event.get("pad_to", 0)
    padding = ""
    overhead = len(json.dumps({"summary": summary, "padding": ""}))
    if pad_to > overhead:
        padding = "x" * (pad_to - overhead)
    return {"summary": summary, "padding": padding}
