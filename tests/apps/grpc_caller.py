"""A gRPC client over ONE channel to TARGET; prints one JSON line.

    python3 grpc_caller.py TARGET COUNT            COUNT unary Hello calls: how many each
                                                   instance answered, and the failures
    python3 grpc_caller.py TARGET stream N SECONDS one Count stream: the messages received,
                                                   who sent them, and how it ended
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import grpc


def unary(channel: grpc.Channel, count: int) -> dict[str, object]:
    answered: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    hello = channel.unary_unary("/tulle.test.Greeter/Hello")
    for _ in range(count):
        try:
            answered[hello(b"", timeout=10).decode()] += 1
        except grpc.RpcError as error:
            failures[f"{error.code().name}: {error.details()}"] += 1
    return {"answered": answered, "failures": failures}


def stream(channel: grpc.Channel, count: int, seconds: float) -> dict[str, object]:
    received = []
    status = "OK"
    try:
        for message in channel.unary_stream("/tulle.test.Greeter/Count")(
                f"{count} {seconds}".encode(), timeout=seconds * 4):
            received.append(message.decode())
    except grpc.RpcError as error:
        status = f"{error.code().name}: {error.details()}"
    return {"received": len(received), "status": status,
            "from": sorted({message.split()[0] for message in received})}


def main(target: str, args: list[str]) -> None:
    with grpc.insecure_channel(target) as channel:
        if args[0] == "stream":
            result = stream(channel, int(args[1]), float(args[2]))
        else:
            result = unary(channel, int(args[0]))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
