"""Request dependencies: the app's runtime state, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.process.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread
    # hop on every request of the hot path for what is an attribute lookup.
    state: ServiceState = request.app.state.sepconv
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
