"""The pure core: definitions, validation, instance state and the engine.

Nothing under ``hephaestus._core`` performs I/O or imports asyncio, storage or runners
(``tests/unit/test_architecture.py`` checks it).
"""
