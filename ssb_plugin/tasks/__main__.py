import sys

from ssb_plugin.tasks import main

sys.exit(main())
