"""``python -m tulle.cli``: the same as the `tulle` command."""

from tulle.cli.main import main

main()
