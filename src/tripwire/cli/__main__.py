"""``python -m tripwire.cli ...`` is ``tripwire ...``."""

from tripwire.cli import main

main()
