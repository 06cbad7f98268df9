"""Entry point of the frozen Windows agent (mamori-agent.spec): the same `mamori` command line."""

import sys

from agent.cli import main

sys.exit(main())
