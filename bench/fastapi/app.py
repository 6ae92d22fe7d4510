"""The FastAPI Hero Registry the project replaces, as a benchmark contender.

Same API shape as the component (see /work/shared/DESIGN.md): heroes in memory,
pydantic validation (422 in FastAPI's shape), 404 ``{"detail": "Hero not found"}``,
Prometheus metrics from prometheus-fastapi-instrumentator on ``/metrics``, and
JSON log lines from python-json-logger on stdout: one uvicorn access line per
request, plus an application line per change.

Run: ``python app.py --host 127.0.0.1 --port 8000`` (uvicorn, one worker).
"""

import argparse
import logging
import os
import time
from datetime import datetime, timezone
from itertools import islice
from typing import Annotated, Optional

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Response, status
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel, ConfigDict, StringConstraints

LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "target"},
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "": {"handlers": ["stdout"], "level": "INFO"},
        "uvicorn": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
}

log = logging.getLogger("hero_registry")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Power = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Team = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]


class HeroIn(BaseModel):
    """Input of POST /heroes and PUT /heroes/{id}; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    power: Power
    team: Optional[Team] = None


class Hero(BaseModel):
    """A stored hero, as returned."""

    id: str
    name: str
    power: str
    team: Optional[str]
    created_at: str


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48-bit milliseconds and 80 random bits, Crockford base32."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


app = FastAPI(title="Hero Registry")
Instrumentator().instrument(app).expose(app)

# Insertion-ordered: creation order, as the API promises.
heroes: dict[str, Hero] = {}


@app.get("/")
def root() -> dict:
    return {"message": "Welcome to the Hero Registry"}


@app.post("/heroes", status_code=status.HTTP_201_CREATED, response_model=Hero)
def create_hero(hero: HeroIn, response: Response) -> Hero:
    stored = Hero(id=new_ulid(), created_at=now_rfc3339(), **hero.model_dump())
    heroes[stored.id] = stored
    response.headers["Location"] = f"/heroes/{stored.id}"
    log.info("hero created", extra={"hero_id": stored.id})
    return stored


@app.get("/heroes", response_model=list[Hero])
def list_heroes(
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    team: Optional[str] = None,
) -> list[Hero]:
    matching = heroes.values() if team is None else (h for h in heroes.values() if h.team == team)
    return list(islice(matching, offset, offset + limit))


@app.get("/heroes/{hero_id}", response_model=Hero)
def read_hero(hero_id: str) -> Hero:
    hero = heroes.get(hero_id)
    if hero is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    return hero


@app.put("/heroes/{hero_id}", response_model=Hero)
def replace_hero(hero_id: str, hero: HeroIn) -> Hero:
    old = heroes.get(hero_id)
    if old is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    stored = Hero(id=old.id, created_at=old.created_at, **hero.model_dump())
    heroes[hero_id] = stored
    log.info("hero replaced", extra={"hero_id": hero_id})
    return stored


@app.delete("/heroes/{hero_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_hero(hero_id: str) -> Response:
    if heroes.pop(hero_id, None) is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    log.info("hero deleted", extra={"hero_id": hero_id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_config=LOG_CONFIG)
