"""Live: the REST service, incremental processing, action rules, the outbox and
its delivery, holdouts and the effect of actions.

Only :mod:`keymoments.live.service` needs the ``serve`` extra (FastAPI, uvicorn);
importing it without them raises :class:`~keymoments.errors.MissingExtraError`.
"""
