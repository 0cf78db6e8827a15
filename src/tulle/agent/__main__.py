"""``python -m tulle.agent CONFIG_JSON``: what `tulle run` becomes once it has checked its flags."""

from __future__ import annotations

import sys

from tulle.agent.config import AgentConfig
from tulle.errors import TulleError


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tulle.agent CONFIG_JSON (start workloads with `tulle run`)",
              file=sys.stderr)
        return 2
    from tulle.agent.main import run

    try:
        code: int = run(AgentConfig.from_json(argv[0]))
    except TulleError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
