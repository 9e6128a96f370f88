"""Public name of the alignment self-check: `python -m ssb_plugin.selfcheck SET --model M`."""

from ssb_plugin.train.selfcheck import main

if __name__ == "__main__":
    raise SystemExit(main())
