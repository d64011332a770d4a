"""Check the built distributions: complete metadata, one version, the README, py.typed.

Run by `smoke/install.sh` after ``uv build``: ``python smoke/check_dists.py DIST_DIR``. Exits
non-zero naming each problem. Standard library only.
"""

from __future__ import annotations

import email.parser
import re
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_CLASSIFIERS = ("Typing :: Typed", "Programming Language :: Python :: 3.11")


def _version(package: str) -> str:
    source = (ROOT / "packages" / package / "src" / package / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', source, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no __version__ in {package}/__init__.py")
    return match.group(1)


def _wheel_problems(wheel: Path, package: str, version: str) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"{package}-{version}.dist-info"
        metadata: Message = email.parser.Parser().parsestr(
            archive.read(f"{info}/METADATA").decode()
        )
    problems = []
    if f"{package}/py.typed" not in names:
        problems.append("py.typed missing")
    if f"{info}/licenses/LICENSE" not in names:
        problems.append("LICENSE missing")
    if metadata["Version"] != version:
        problems.append(f"Version {metadata['Version']} != __version__ {version}")
    if metadata["License-Expression"] != "MIT":
        problems.append(f"License-Expression {metadata['License-Expression']!r}")
    if metadata["Description-Content-Type"] != "text/markdown":
        problems.append("long description is not Markdown")
    readme_path = ROOT / "packages" / package / "README.md"
    readme = readme_path.read_text() if readme_path.is_file() else ""
    description = metadata.get_payload()
    if not isinstance(description, str) or description.strip() != readme.strip():
        problems.append("long description is not the package README")
    if len(readme.splitlines()) < 30:
        problems.append("the package README is a stub")
    classifiers = metadata.get_all("Classifier") or []
    problems += [f"classifier {c!r} missing" for c in REQUIRED_CLASSIFIERS if c not in classifiers]
    for field in ("Summary", "Requires-Python", "Keywords"):
        if not metadata[field]:
            problems.append(f"{field} missing")
    return problems


def _sdist_problems(sdist: Path, package: str, version: str) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    top = f"{package}-{version}"
    wanted = ("PKG-INFO", "README.md", "LICENSE", "pyproject.toml", f"src/{package}/py.typed")
    return [f"sdist lacks {name}" for name in wanted if f"{top}/{name}" not in names]


def main(dist: Path) -> int:
    failed = False
    for package in ("sessionwise", "taskyard"):
        version = _version(package)
        wheel = dist / f"{package}-{version}-py3-none-any.whl"
        sdist = dist / f"{package}-{version}.tar.gz"
        missing = [path.name for path in (wheel, sdist) if not path.is_file()]
        problems = [f"{name} not built" for name in missing]
        if not missing:
            problems = _wheel_problems(wheel, package, version)
            problems += _sdist_problems(sdist, package, version)
        for problem in problems:
            print(f"{package}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
        if not problems:
            print(f"{package} {version}: wheel and sdist complete")
    quick_start = _quick_start()
    if quick_start is None or quick_start not in (ROOT / "smoke" / "smoke_app.py").read_text():
        print("smoke_app.py lacks the package README's quick start", file=sys.stderr)
        failed = True
    return 1 if failed else 0


def _quick_start() -> str | None:
    readme = (ROOT / "packages" / "sessionwise" / "README.md").read_text()
    match = re.search(r"^## Quick start\n.*?```python\n(.*?)^```", readme, re.M | re.S)
    return match.group(1) if match else None


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
