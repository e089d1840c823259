"""``python -m aescore``: the same as the ``aescore`` console script."""

from aescore.cli.main import main

main()
