"""The Oban runner: steps as durable jobs of the ``oban`` package, across processes and machines.

Install the extra (``pip install 'hephaestus-workflow[oban]'``), migrate the schema
(``hephaestus db migrate``: it creates ``oban``'s tables beside the runs), and swap the runner::

    app = Hephaestus(storage=PostgresStorage(dsn), runner=ObanRunner())

Workflows and steps do not change. See docs/oban.md for the guarantees, the modes (worker,
client, inline for tests) and operations.
"""

from hephaestus.runners.oban._runner import ObanRunner
from hephaestus.runners.oban._worker import StepWorker

__all__ = ["ObanRunner", "StepWorker"]
