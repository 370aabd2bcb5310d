"""``python -m depmin`` and the zipapp's entry point: the CLI, after the stand-ins of depmin.compat."""

from depmin.compat import install


def main() -> None:
    install()
    from depmin.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
