"""The message bus: the XSUB/XPUB forwarder every publisher and subscriber meets at."""
