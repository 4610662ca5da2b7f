"""`python -m rdcae.report <multirun dir> [more dirs] [--table N] [--out DIR]`: a sweep as the paper's
table, ours beside the paper's (rdcae.paper.report)."""

import sys

from rdcae.paper.report import main

if __name__ == "__main__":
    sys.exit(main())
