"""Back up the state database while the system runs: ``python -m services.state.backup DEST``.

Uses SQLite's online backup API, which copies a consistent snapshot page by page while the
state service keeps writing (WAL mode); the copy is checked with ``integrity_check``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from services.state.db import DB_FILENAME


def backup(data_dir: Path, dest: Path) -> int:
    """Copy ``data_dir``'s state database to ``dest``; return the number of pages copied."""
    source_path = data_dir / DB_FILENAME
    if not source_path.is_file():
        raise FileNotFoundError(f"no state database at {source_path}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
        (status,) = target.execute("PRAGMA integrity_check").fetchone()
        if status != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {status}")
        (pages,) = target.execute("PRAGMA page_count").fetchone()
        return pages
    finally:
        target.close()
        source.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="file to write the copy to")
    parser.add_argument("--data-dir", type=Path, default=Path("var"),
                        help="the state service's DATA_DIR (default: var)")
    args = parser.parse_args()
    try:
        pages = backup(args.data_dir, args.dest)
    except (FileNotFoundError, RuntimeError, sqlite3.Error) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"backed up {pages} pages to {args.dest}")


if __name__ == "__main__":
    main()
