"""Deprecated location of :data:`FAMILIES`: import from :mod:`tripwire.behavior` instead.

Kept only while ``tripwire/behavior/cli.py`` (being moved into the ``tripwire.cli`` package)
still imports it; delete it with that move.
"""

from tripwire.behavior.family import FAMILIES

__all__ = ["FAMILIES"]
