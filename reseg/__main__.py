import sys

from reseg.cli import main

sys.exit(main())
