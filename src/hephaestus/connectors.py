"""Connectors: one small contract for integrations with external systems (the seed's §2.3).

A connector names the actions it supports and executes one on request:
``execute(action, params, config)`` returns the result as a mapping, or raises
``ConnectorError`` (the seed's ``("error", reason)``). Steps call a connector through ``call``,
which answers an action the connector does not support with ``UnsupportedActionError`` before
anything runs. The engine never calls connectors: they are for your steps.

```python
class Shipping(Connector):
    def supported_actions(self) -> Collection[str]:
        return ("create_label",)

    async def execute(self, action, params, config):
        return {"label": f"{config['carrier']}-{params['order']}"}


label = await call(Shipping(), "create_label", {"order": "A-1"}, {"carrier": "dhl"})
```

A class that subclasses ``Connector`` and lacks one of the two methods is refused when it is
defined (``ConnectorDefinitionError``). Any other object with both methods is a connector too
(the ``Protocol`` is structural and ``runtime_checkable``), checked by ``call`` instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hephaestus.errors import ConnectorDefinitionError, ConnectorError, UnsupportedActionError

__all__ = ["Connector", "call"]

_METHODS = ("supported_actions", "execute")


@runtime_checkable
class Connector(Protocol):
    """An integration with an external system: the actions it supports, and how to run one.

    ``execute`` may be a plain or an ``async`` method. Subclassing is optional (any object with
    both methods matches); a subclass missing a method is refused at class definition.
    """

    def supported_actions(self) -> Collection[str]:
        """The action names ``execute`` accepts."""
        ...

    def execute(
        self, action: str, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]:
        """Run ``action`` with ``params`` under ``config``; raise ``ConnectorError`` to refuse."""
        ...

    if not TYPE_CHECKING:  # a runtime hook, not a member structural matches must have

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            if cls.__dict__.get("_is_protocol"):
                return  # a protocol extending this one: nothing to implement yet
            missing = [n for n in _METHODS if getattr(cls, n) is getattr(Connector, n)]
            if missing:
                raise ConnectorDefinitionError(
                    f"connector {cls.__qualname__} does not define {' and '.join(missing)}(); "
                    "a connector implements supported_actions() -> names and "
                    "execute(action, params, config) -> mapping"
                )


async def call(
    connector: Connector,
    action: str,
    params: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Mapping[str, Any]:
    """Run ``action`` on ``connector``, awaiting it if it is async; returns its result.

    Raises ``UnsupportedActionError`` (nothing runs) for an action the connector does not list
    in ``supported_actions()``, and ``ConnectorError`` when the result is not a mapping.
    """
    supported = tuple(connector.supported_actions())
    if action not in supported:
        raise UnsupportedActionError(
            f"{type(connector).__qualname__} does not support action {action!r}; "
            f"supported: {', '.join(repr(a) for a in supported) or 'none'}"
        )
    result = connector.execute(action, params or {}, config or {})
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, Mapping):
        raise ConnectorError(
            f"{type(connector).__qualname__}.execute({action!r}) returned "
            f"{type(result).__name__}, not a mapping: return a dict (or raise ConnectorError)"
        )
    return result
