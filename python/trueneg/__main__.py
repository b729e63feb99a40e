import sys

from trueneg.cli import main

sys.exit(main())
