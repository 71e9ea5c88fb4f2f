"""The dashboard's queries: aggregates over exchanges, grades, ratings and the pool, and
the grader's calibrations (its fits to the thumbs, newest first).

Owns every SQL figure the Dashboard tab plots, computed in SQL (GROUP BY day) so the page stays
fast with 100,000 exchanges, and the bounded sample of the newest pool answers whose diversity
feedback/dashboard.py measures (the measures are the pool stage's, above this layer). Returns
pandas DataFrames, the shape Gradio's plots take; the plots are assistant/web/dashboard_tab.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine, case, func
from sqlmodel import Session, select

from store.tables import Calibration, Exchange, Grade, PoolEntry, Rating

SAMPLE = 2000  # pool entries read for the diversity figures
CALIBRATIONS = 20  # newest grader calibrations listed
CALIBRATION_COLUMNS = ["when", "ratings", "AUROC before", "AUROC after", "adopted", "reason"]


@dataclass
class Dashboard:
    exchanges_per_day: pd.DataFrame  # day, exchanges
    score_histogram: pd.DataFrame  # score (bin start: 0.0 is 0.0-0.1), answers
    flag_rate: pd.DataFrame  # day, flag rate, graded
    pool_by_source: pd.DataFrame  # day, source, examples (cumulative)
    human_share: pd.DataFrame  # day, kind, share (cumulative)
    diversity: pd.DataFrame  # measure, value
    agreement: pd.DataFrame  # day, agreement, rated
    totals: dict
    sample: list[str] = field(default_factory=list)  # newest pool answers, for diversity
    # the grader's fits to the thumbs, newest first: when, ratings, AUROC before/after, adopted
    calibrations: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=CALIBRATION_COLUMNS)
    )


def newest_per_exchange(table):
    return select(func.max(table.id)).group_by(table.exchange_id)


def day(column):
    return func.date(column).label("day")


def compute(engine: Engine) -> Dashboard:
    """Every SQL figure at once, and the sample of pool answers the diversity figures read
    (feedback/dashboard.py measures them)."""
    with Session(engine) as s:
        per_day = _exchanges_per_day(s)
        hist, flags = _score_histogram(s), _flag_rate(s)
        pool = _pool_per_day(s)
        statuses = dict(
            s.exec(select(PoolEntry.status, func.count()).group_by(PoolEntry.status)).all()
        )
        agreement = _agreement(s)
        calibrations = _calibrations(s)
        texts = list(
            s.exec(
                select(PoolEntry.completion)
                .where(PoolEntry.status == "train")
                .order_by(PoolEntry.id.desc())
                .limit(SAMPLE)
            )
        )
    pool_by_source, human = _cumulative(pool)
    graded = int(flags["graded"].sum()) if len(flags) else 0
    rated = int(agreement["rated"].sum()) if len(agreement) else 0
    totals = {
        "exchanges": int(per_day["exchanges"].sum()) if len(per_day) else 0,
        "graded": graded,
        "flagged": _weighted(flags, "flag rate", "graded"),
        "statuses": statuses,
        "agreement": _weighted(agreement, "agreement", "rated"),
        "rated": rated,
        "diversity_sample": len(texts),
    }
    for frame in (per_day, flags, pool_by_source, human, agreement):
        # Dates, not strings, so the plots draw a time axis with readable ticks.
        frame["day"] = pd.to_datetime(frame["day"])
    return Dashboard(
        exchanges_per_day=per_day,
        score_histogram=hist,
        flag_rate=flags,
        pool_by_source=pool_by_source,
        human_share=human,
        diversity=pd.DataFrame(columns=["measure", "value"]),
        agreement=agreement,
        totals=totals,
        sample=texts,
        calibrations=calibrations,
    )


def _weighted(frame: pd.DataFrame, value: str, weight: str) -> float | None:
    """The mean of `value` over all days, each day weighted by its `weight` (None: no rows).

    >>> _weighted(pd.DataFrame({"v": [1.0, 0.0], "n": [3, 1]}), "v", "n")
    0.75
    """
    total = int(frame[weight].sum()) if len(frame) else 0
    if not total:
        return None
    return round(float((frame[value] * frame[weight]).sum()) / total, 3)


def _exchanges_per_day(s: Session) -> pd.DataFrame:
    rows = s.exec(select(day(Exchange.created_at), func.count()).group_by("day").order_by("day"))
    return pd.DataFrame(rows.all(), columns=["day", "exchanges"])


def _latest_grades():
    return Grade.id.in_(newest_per_exchange(Grade))


def _score_histogram(s: Session) -> pd.DataFrame:
    """Answers per tenth of the combined score, every bin present (0.0 is 0.0-0.1)."""
    # A CASE ladder, not min(CAST(score * 10 AS INTEGER), 9): two-argument min() is SQLite's
    # alone, and PostgreSQL's CAST rounds where SQLite's truncates (0.35 would land in 0.4).
    bins = case(*((Grade.score < (b + 1) / 10, b) for b in range(9)), else_=9)
    hist = pd.DataFrame(
        s.exec(select(bins.label("b"), func.count()).where(_latest_grades()).group_by("b")).all(),
        columns=["bin", "answers"],
    )
    return (
        hist.set_index("bin")
        .reindex(range(10), fill_value=0)
        .rename_axis("bin")
        .reset_index()
        .assign(score=lambda d: [f"{b / 10:.1f}" for b in d["bin"]])[["score", "answers"]]
    )


def _flag_rate(s: Session) -> pd.DataFrame:
    rows = s.exec(
        select(
            day(Grade.created_at),
            func.avg(case((Grade.flagged, 1.0), else_=0.0)),
            func.count(),
        )
        .where(_latest_grades())
        .group_by("day")
        .order_by("day")
    )
    return pd.DataFrame(rows.all(), columns=["day", "flag rate", "graded"])


def _pool_per_day(s: Session) -> pd.DataFrame:
    rows = s.exec(
        select(day(PoolEntry.exchange_at), PoolEntry.source, func.count())
        .where(PoolEntry.status == "train")
        .group_by("day", PoolEntry.source)
        .order_by("day")
    )
    return pd.DataFrame(rows.all(), columns=["day", "source", "new"])


def _agreement(s: Session) -> pd.DataFrame:
    """Per day, how often the self-grade's flag agrees with the user's thumbs down."""
    # Two plain queries joined in pandas: SQLite plans the same join in SQL as a nested
    # loop over a subquery, which took 4.6 s at 10,000 exchanges.
    thumbs = pd.DataFrame(
        s.exec(
            select(Rating.exchange_id, Rating.value).where(
                Rating.id.in_(newest_per_exchange(Rating)), Rating.value != 0
            )
        ).all(),
        columns=["exchange_id", "value"],
    )
    graded = pd.DataFrame(
        s.exec(
            select(Grade.exchange_id, day(Grade.created_at), Grade.flagged).where(_latest_grades())
        ).all(),
        columns=["exchange_id", "day", "flagged"],
    )
    both = graded.merge(thumbs, on="exchange_id")
    both["agreement"] = (both["flagged"].astype(bool) == (both["value"] < 0)).astype(float)
    return (
        both.groupby("day", as_index=False)
        .agg(agreement=("agreement", "mean"), rated=("agreement", "size"))
        .sort_values("day")
        .reset_index(drop=True)
    )


def _calibrations(s: Session) -> pd.DataFrame:
    rows = s.exec(select(Calibration).order_by(Calibration.id.desc()).limit(CALIBRATIONS))
    return pd.DataFrame(
        [
            (
                f"{c.created_at:%Y-%m-%d %H:%M}",
                c.ratings,
                c.auroc_before,
                c.auroc_after,
                "yes" if c.adopted else "no",
                c.reason,
            )
            for c in rows
        ],
        columns=CALIBRATION_COLUMNS,
    )


def _cumulative(pool: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pool size by source per day, and the human shares, both as running totals."""
    if pool.empty:
        empty = pd.DataFrame(columns=["day", "source", "examples"])
        return empty, pd.DataFrame(columns=["day", "kind", "share"])
    wide = pool.pivot_table(index="day", columns="source", values="new", fill_value=0)
    for source in ("human_written", "human_approved", "model_only"):
        if source not in wide:
            wide[source] = 0
    wide = wide.sort_index().cumsum()
    total = wide.sum(axis=1)
    long = wide.reset_index().melt(id_vars="day", var_name="source", value_name="examples")
    human = pd.DataFrame(
        {
            "day": wide.index,
            "human-written": (wide["human_written"] / total).round(4).values,
            "human (written or approved)": (
                (wide["human_written"] + wide["human_approved"]) / total
            )
            .round(4)
            .values,
        }
    ).melt(id_vars="day", var_name="kind", value_name="share")
    return long, human
