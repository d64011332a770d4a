"""taskyard: a task queue for teams and their agents."""

__all__ = ["__version__"]

# The one version source: the build reads it (tool.hatch.version).
__version__ = "0.2.0.dev0"
