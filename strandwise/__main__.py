import sys

from strandwise.cli.main import main

sys.exit(main())
