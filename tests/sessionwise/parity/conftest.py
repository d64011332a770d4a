# test_isolated_run.py runs only in the parity test's inner pytest process.
collect_ignore = ["test_isolated_run.py"]
