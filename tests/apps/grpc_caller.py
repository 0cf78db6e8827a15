"""A gRPC client: COUNT unary calls to /tulle.test.Greeter/Hello at TARGET over ONE channel;
prints one JSON line: how many calls each instance answered, and the failures.

    python3 grpc_caller.py TARGET COUNT
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import grpc


def main(target: str, count: int) -> None:
    answered: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    with grpc.insecure_channel(target) as channel:
        hello = channel.unary_unary("/tulle.test.Greeter/Hello")
        for _ in range(count):
            try:
                answered[hello(b"", timeout=10).decode()] += 1
            except grpc.RpcError as error:
                failures[f"{error.code().name}: {error.details()}"] += 1
    print(json.dumps({"answered": answered, "failures": failures}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
