import sys

from sdml.notebooks.runner import main

sys.exit(main())
