"""GET /health: the process answers (for a load balancer or an orchestrator).
It says nothing about loans, keys or configuration, so it needs no key."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}
