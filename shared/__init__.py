"""Code that two or more services import: messages, codec, topics, bus, config, logging, clock.

Nothing in this package imports from ``services``.
"""
