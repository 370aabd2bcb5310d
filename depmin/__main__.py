"""Allow ``python -m depmin``."""

from depmin.cli import main

if __name__ == "__main__":
    main()
