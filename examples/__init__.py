"""Runnable examples from the sessionwise README: one Database, a web app and a job."""
