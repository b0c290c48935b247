"""The system's processes: each sub-package runs as ``python -m services.<name>``."""
