"""The ``state`` service: the system's source of truth (SQLite in WAL mode).

``db`` opens and migrates the database, ``store`` holds every read and write the
service answers, ``accounting`` turns fills into positions, PnL and completed trades,
``service`` puts the store behind request/reply and publishes its changes as ``state.*``.
"""
