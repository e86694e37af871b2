"""Rollcall: enrollment in instructor-led training sessions (an event-sourced service).

One import package. Its layers (docs/architecture.md) are ``rollcall.domain``,
``rollcall.application``, ``rollcall.projections``, ``rollcall.consumers``,
``rollcall.adapters`` and ``rollcall.entrypoints``. ``domain/``, ``projections/`` and
``consumers/`` stay at the top of the repository, where the design card put them;
``rollcall/`` links to them, so that Python, the type checker and the import contracts
see one package, and the wheel holds them inside it.
"""
