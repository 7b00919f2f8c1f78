"""Test behaviour: Inspect scenario tasks, scorers, the tripwire provider and sandbox."""
