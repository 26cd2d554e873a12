import sys

from sdml.cli import main

sys.exit(main())
