"""``python -m landscape``: the same command line as the ``landscape`` console script."""

from landscape.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="landscape")
