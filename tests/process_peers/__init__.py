"""Scripts that tests/test_process_faults.py runs as processes of their own."""
