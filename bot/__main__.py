"""`python -m bot` runs the command line."""

from bot.cli import main

if __name__ == "__main__":  # guarded: multiprocessing may import this module in its worker processes
    raise SystemExit(main())
