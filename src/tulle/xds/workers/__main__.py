"""``python -m tulle.xds.workers FD``: one worker process, talking to its control plane over
the inherited socket ``FD`` (the control plane starts it)."""

import sys

from tulle.xds.workers.child import main

if __name__ == "__main__":
    main(int(sys.argv[1]))
