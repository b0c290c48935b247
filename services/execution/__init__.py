"""Execution: the only holder of the API secret; risk checks, orders, user-data stream."""
