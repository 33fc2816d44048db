import sys

from rnnkit._ext import main

sys.exit(main())
