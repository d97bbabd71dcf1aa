"""Where a model comes from: a local folder or a Hub id at a branch, tag or commit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import UsageError


def looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else names a local folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a local folder or a Hub id (at a branch, tag or commit)."""

    name_or_path: str
    revision: str | None = None

    @property
    def flag(self) -> str:
        return f"--model_name_or_path {self.name_or_path}" + (f" --revision {self.revision}" if self.revision else "")

    @property
    def label(self) -> str:
        """A short name for result files: a run's `final`/milestone folder is named after its run."""
        if Path(self.name_or_path).is_dir():
            path = Path(self.name_or_path).resolve()
            if path.name == "final" or path.parent.name == "milestones":
                run = path.parent if path.name == "final" else path.parent.parent
                return f"{run.name}-{path.name}"
            return path.name
        return self.name_or_path.replace("/", "__") + (f"@{self.revision}" if self.revision else "")

    def hub_options(self) -> dict:
        return {"revision": self.revision} if self.revision else {}

    def check(self) -> None:
        if self.revision and Path(self.name_or_path).is_dir():
            raise UsageError(f"{self.flag}: --revision selects a Hub branch; {self.name_or_path} is a local folder")
        if looks_like_path(self.name_or_path) and not Path(self.name_or_path).is_dir():
            raise UsageError(f"{self.flag}: no such folder")
