"""Inspect entry point: importing this registers tripwire's tasks, provider and sandbox."""

from tripwire.behavior import provider as provider
from tripwire.behavior import sandbox as sandbox
from tripwire.behavior import scenarios as scenarios
