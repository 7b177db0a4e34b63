"""``python -m drplan``: the same as the ``drplan`` program (the WAL agent is started so)."""

from drplan.entry import main

main()
