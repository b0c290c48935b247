"""Gateway: the dashboard, REST ``/api/*`` and WebSockets over the bus."""
