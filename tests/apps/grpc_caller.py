"""A gRPC client over ONE channel to TARGET; prints one JSON line.

    python3 grpc_caller.py TARGET COUNT [EVERY]    COUNT unary Hello calls: how many each
                                                   instance answered, and the failures;
                                                   EVERY seconds apart (steady traffic)
    python3 grpc_caller.py TARGET stream N SECONDS one Count stream: the messages received,
                                                   who sent them, and how it ended
    python3 grpc_caller.py TARGET trailers CODE DETAILS
                                                   one Trailers call: its status, details and
                                                   trailing metadata (binary values in hex)
    python3 grpc_caller.py TARGET slow SECONDS DEADLINE
                                                   one Slow call with that deadline: its status
                                                   and how long it took
    python3 grpc_caller.py TARGET reflect          the services server reflection lists, and
                                                   the file that defines grpc.health.v1.Health
                                                   (grpcio-reflection's client)
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import grpc


def unary(channel: grpc.Channel, count: int, every: float = 0.0) -> dict[str, object]:
    answered: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    hello = channel.unary_unary("/tulle.test.Greeter/Hello")
    for _ in range(count):
        try:
            answered[hello(b"", timeout=10).decode()] += 1
        except grpc.RpcError as error:
            failures[f"{error.code().name}: {error.details()}"] += 1
        if every:
            time.sleep(every)
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


def trailers(channel: grpc.Channel, code: str, details: str) -> dict[str, object]:
    call = channel.unary_unary("/tulle.test.Greeter/Trailers")
    try:
        answer, outcome = call.with_call(f"{code} {details}".encode(), timeout=10)
        status, message, trailing = "OK", "", outcome.trailing_metadata()
        answer = answer.decode()
    except grpc.RpcError as error:
        status, message, trailing = error.code().name, error.details(), \
            error.trailing_metadata()
        answer = None
    return {"status": status, "details": message, "answer": answer,
            "trailing": {key: value.hex() if isinstance(value, bytes) else value
                         for key, value in trailing or ()}}


def slow(channel: grpc.Channel, seconds: float, deadline: float) -> dict[str, object]:
    started = time.monotonic()
    try:
        channel.unary_unary("/tulle.test.Greeter/Slow")(str(seconds).encode(), timeout=deadline)
        status, details = "OK", ""
    except grpc.RpcError as error:
        status, details = error.code().name, error.details()
    return {"status": status, "details": details,
            "elapsed": round(time.monotonic() - started, 2)}


def reflect(channel: grpc.Channel) -> dict[str, object]:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    database = ProtoReflectionDescriptorDatabase(channel)
    health = database.FindFileContainingSymbol("grpc.health.v1.Health")
    return {"services": sorted(database.get_services()), "healthFile": health.name}


def main(target: str, args: list[str]) -> None:
    with grpc.insecure_channel(target) as channel:
        if args[0] == "stream":
            result = stream(channel, int(args[1]), float(args[2]))
        elif args[0] == "trailers":
            result = trailers(channel, args[1], " ".join(args[2:]))
        elif args[0] == "slow":
            result = slow(channel, float(args[1]), float(args[2]))
        elif args[0] == "reflect":
            result = reflect(channel)
        else:
            result = unary(channel, int(args[0]), float(args[1]) if len(args) > 1 else 0.0)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
