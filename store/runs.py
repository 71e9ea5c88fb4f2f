"""Reads and writes of refresh runs, their training mixes and the held-out split.

Owns every query the refresh (feedback/refresh/pipeline.py) makes: starting a run, moving it from step to step in
its own transaction (so a killed process leaves the last step begun on record), finishing it,
marking runs a dead process left `running` as interrupted, and the fixed held-out split.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import select

from store.base import Repository, chunks
from store.tables import Heldout, RefreshRun, TrainedOn, utcnow


class RunStore(Repository):
    def start(self, **fields) -> RefreshRun:
        with self.session() as s:
            run = RefreshRun(**fields)
            s.add(run)
            s.commit()
            return run

    def update(self, run_id: int, **fields) -> RefreshRun:
        with self.session() as s:
            run = s.get(RefreshRun, run_id)
            for key, value in fields.items():
                setattr(run, key, value)
            s.add(run)
            s.commit()
            return run

    def finish(self, run_id: int, status: str, reason: str | None = None, **fields) -> RefreshRun:
        return self.update(run_id, status=status, reason=reason, finished_at=utcnow(), **fields)

    def record_mix(self, run_id: int, exchange_ids: list[int]) -> None:
        with self.session() as s:
            s.add_all(TrainedOn(run_id=run_id, exchange_id=i) for i in exchange_ids)
            s.commit()

    def trained_ids(self, statuses: tuple[str, ...] = ("promoted",)) -> set[int]:
        """Exchanges in the mix of any run with one of these statuses."""
        with self.session() as s:
            return set(
                s.exec(
                    select(TrainedOn.exchange_id)
                    .join(RefreshRun, RefreshRun.id == TrainedOn.run_id)
                    .where(RefreshRun.status.in_(statuses))
                )
            )

    def recover_interrupted(self) -> int:
        """Runs left `running` by a process that died: marked interrupted, with their step."""
        with self.session() as s:
            result = s.exec(
                update(RefreshRun)
                .where(RefreshRun.status == "running")
                .values(
                    status="interrupted",
                    reason="the process stopped during this step",
                    finished_at=utcnow(),
                )
            )
            s.commit()
            return result.rowcount

    def runs(self) -> list[RefreshRun]:
        with self.session() as s:
            return list(s.exec(select(RefreshRun).order_by(RefreshRun.id)))

    def run(self, adapter_id: str) -> RefreshRun | None:
        with self.session() as s:
            return s.exec(select(RefreshRun).where(RefreshRun.adapter_id == adapter_id)).first()

    def last_promoted(self) -> RefreshRun | None:
        with self.session() as s:
            return s.exec(
                select(RefreshRun)
                .where(RefreshRun.status == "promoted")
                .order_by(RefreshRun.id.desc())
            ).first()

    # the held-out split
    def heldout_ids(self) -> set[int]:
        with self.session() as s:
            return set(s.exec(select(Heldout.exchange_id)))

    def hold_out(self, exchange_ids: list[int]) -> None:
        if not exchange_ids:
            return
        with self.session() as s:
            for ids in chunks(exchange_ids):
                s.add_all(Heldout(exchange_id=i) for i in ids)
            s.commit()
