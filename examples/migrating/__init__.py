"""The "after" side of docs/migrating.md: a tutorial-style task API, moved onto sessionwise.

Plain SQLAlchemy models (`DeclarativeBase`) on sessionwise's default session; every snippet
the guide shows is a piece of these files (tests/test_examples.py checks that).
"""
