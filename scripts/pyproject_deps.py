"""Print the third-party requirements of one or more pyproject.toml files, one per line.

Used by the Dockerfiles to install dependencies in their own layer before the code is copied,
so a code change does not reinstall them. Parley's own distributions (``parley-*``) are left
out: the image installs those from source with ``--no-deps`` afterwards.

    python3 pyproject_deps.py services/relay/pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirements(paths: list[str]) -> list[str]:
    """Return the sorted, de-duplicated non-Parley dependencies declared in ``paths``."""
    found: set[str] = set()
    for path in paths:
        with open(path, "rb") as fh:
            project = tomllib.load(fh).get("project", {})
        for req in project.get("dependencies", []):
            match = _NAME.match(req)
            if match and not match.group(1).lower().replace("_", "-").startswith("parley-"):
                found.add(req.strip())
    return sorted(found)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: pyproject_deps.py PYPROJECT.toml [...]", file=sys.stderr)
        return 2
    try:
        print("\n".join(requirements(argv)))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"pyproject_deps: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
