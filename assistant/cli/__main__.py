"""`python -m assistant.cli ...` is `autodidact ...`."""

import sys

from assistant.cli import main

sys.exit(main())
