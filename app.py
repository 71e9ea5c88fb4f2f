"""Start the Autodidact web app: `python app.py [flags]` is `autodidact serve [flags]`."""

import sys

from assistant.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
