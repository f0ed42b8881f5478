import sys

from slea.cli import main

sys.exit(main())
