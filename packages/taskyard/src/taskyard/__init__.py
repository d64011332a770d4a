"""taskyard: a task queue for teams and their agents."""
