"""`python -m volccli`."""

from volccli.cli import main

if __name__ == "__main__":
    main()
