"""Which workflow definitions exist, by stored name.

Stored instances name their workflow by string; that string is only ever resolved here, among
classes the application itself defined. Nothing is imported or created from stored data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hephaestus._core.definition import VersionedDefinition, WorkflowDefinition
from hephaestus.errors import UnknownWorkflowError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["WorkflowRegistry", "default_registry", "script_name_hint"]

SCRIPT_MODULE = "__main__"


def script_name_hint(name: str) -> str:
    """Why a stored name like ``__main__.OrderFlow`` resolves nowhere else, or ``""``.

    A workflow defined in a script run as ``python script.py`` lives in module ``__main__``;
    its runs carry that name, which no importable module defines.
    """
    if not name.startswith(f"{SCRIPT_MODULE}."):
        return ""
    qualname = name.removeprefix(f"{SCRIPT_MODULE}.")
    return (
        f"{name!r} was defined in a script run directly (python script.py, module __main__): "
        "no importable module defines that name. Move the workflow into a module the script "
        f'imports, or give the class a fixed name (name = "myapp.{qualname}") in its '
        "script and in that module"
    )


class WorkflowRegistry:
    """Name -> definition. Redefining a name (a module reload, a test) replaces the entry.

    ``default_registry`` holds every workflow defined in the process; an app given
    ``workflows=[...]`` builds its own from them, so it runs and decodes only those.
    """

    def __init__(
        self, definitions: Iterable[WorkflowDefinition | VersionedDefinition] = ()
    ) -> None:
        self._definitions: dict[str, WorkflowDefinition | VersionedDefinition] = {}
        self._umbrellas: dict[str, dict[str, VersionedDefinition]] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: WorkflowDefinition | VersionedDefinition) -> None:
        """Add ``definition``; a versioned umbrella brings its versions (they run its runs)."""
        self._definitions[definition.name] = definition
        if isinstance(definition, VersionedDefinition):
            for version in definition.versions.values():
                self._definitions.setdefault(version.name, version)
                self._umbrellas.setdefault(version.name, {})[definition.name] = definition

    def umbrella_of(self, name: str) -> VersionedDefinition | None:
        """The one versioned workflow listing ``name`` as a version (``None``: none, or several)."""
        umbrellas = self._umbrellas.get(name, {})
        return next(iter(umbrellas.values())) if len(umbrellas) == 1 else None

    def belongs_elsewhere(self, name: str) -> bool:
        """Whether ``name`` is a workflow of this process that this registry leaves out.

        Such runs belong to another app (sharing the storage): recovery leaves them alone
        instead of reporting them as runs of an undefined workflow.
        """
        return name not in self._definitions and name in default_registry

    def resolve(self, name: str) -> WorkflowDefinition:
        """The runnable definition stored instances call ``name``."""
        definition = self._definitions.get(name)
        if definition is None and self.belongs_elsewhere(name):
            raise UnknownWorkflowError(
                f"workflow {name!r} is not one of this app's workflows; add its class to "
                "Hephaestus(workflows=[...])"
            )
        if not isinstance(definition, WorkflowDefinition):
            hint = script_name_hint(name)
            raise UnknownWorkflowError(
                f"no workflow named {name!r} is defined in this process; "
                + (hint or "import the module that defines it before opening the app")
            )
        return definition

    def get(self, name: str) -> WorkflowDefinition | VersionedDefinition | None:
        return self._definitions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[WorkflowDefinition | VersionedDefinition]:
        return iter(list(self._definitions.values()))

    def __len__(self) -> int:
        return len(self._definitions)


default_registry = WorkflowRegistry()
"""Every workflow class registers here when it is defined; apps use it unless given another."""
