"""The ledger's schema as numbered migrations; ledger.py applies the missing ones in order.

Never edit a released migration: add the next number. Each runs in its own transaction and
is recorded in the `migrations` table.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "initial tables", """
CREATE TABLE experiments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    searcher TEXT NOT NULL,
    metric TEXT NOT NULL,
    smaller_is_better INTEGER NOT NULL,
    backend TEXT NOT NULL,
    seed INTEGER NOT NULL,
    spec TEXT NOT NULL,
    spec_path TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    ended REAL,
    code_commit TEXT,
    code_dirty INTEGER NOT NULL DEFAULT 0,
    code_diff TEXT,
    root TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    searcher_done INTEGER NOT NULL DEFAULT 0,
    synced REAL NOT NULL DEFAULT 0
);
CREATE INDEX experiments_name ON experiments(name);
CREATE TABLE trials (
    experiment INTEGER NOT NULL REFERENCES experiments(id),
    id INTEGER NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    bracket INTEGER NOT NULL DEFAULT 0,
    parent INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    length INTEGER NOT NULL DEFAULT 0,
    target_length INTEGER NOT NULL DEFAULT 0,
    rung INTEGER NOT NULL DEFAULT 0,
    best_metric REAL,
    latest_metric REAL,
    latest_checkpoint TEXT,
    best_checkpoint TEXT,
    message TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    report_at TEXT NOT NULL DEFAULT '[]',
    best_length INTEGER,
    checkpoint_length INTEGER NOT NULL DEFAULT 0,
    seed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment, id)
);
CREATE TABLE segments (
    experiment INTEGER NOT NULL REFERENCES experiments(id),
    trial INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    backend TEXT NOT NULL,
    job_name TEXT NOT NULL UNIQUE,
    job_id TEXT,
    target_length INTEGER NOT NULL DEFAULT 0,
    start_length INTEGER NOT NULL DEFAULT 0,
    run_dir TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    nodes TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    submitted REAL,
    started REAL,
    ended REAL,
    offset INTEGER NOT NULL DEFAULT 0,
    end_length INTEGER,
    stop_requested REAL,
    stop_reason TEXT NOT NULL DEFAULT '',
    cancel_sent REAL,
    PRIMARY KEY (experiment, trial, idx)
);
CREATE INDEX segments_state ON segments(experiment, state);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY,
    experiment INTEGER NOT NULL REFERENCES experiments(id),
    trial INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    kind TEXT NOT NULL,
    length INTEGER NOT NULL,
    time REAL NOT NULL,
    "values" TEXT NOT NULL
);
CREATE INDEX metrics_trial ON metrics(experiment, trial, kind);
CREATE TABLE searcher_events (
    experiment INTEGER NOT NULL REFERENCES experiments(id),
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    decisions TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    time REAL NOT NULL,
    PRIMARY KEY (experiment, seq)
);
"""),
    # The normalised spec as versioned JSON (cade_cli.spec.stored): sync and the views rebuild
    # the spec from it, never re-validating the YAML. NULL: recorded before this migration.
    (2, "stored spec", """
ALTER TABLE experiments ADD COLUMN stored_spec TEXT
"""),
    # A random id the ledger's experiment directories are marked with (jobs/rundir.py), so a
    # new ledger never reuses run directories an older one left behind.
    (3, "ledger identity", """
CREATE TABLE ledger_identity (id TEXT NOT NULL);
INSERT INTO ledger_identity (id) VALUES (lower(hex(randomblob(16))))
"""),
    # Large experiments: the unapplied events and the snapshots are found without reading
    # every event row (a row's `applied` sits after its snapshot, in overflow pages).
    # Events recorded from now on carry a snapshot only every few events ('' otherwise:
    # sync restores the latest one and replays the events after it).
    (4, "indexes for large experiments", """
CREATE INDEX searcher_events_unapplied ON searcher_events(experiment, seq) WHERE applied = 0;
CREATE INDEX searcher_events_snapshots ON searcher_events(experiment, seq) WHERE snapshot != ''
"""),
)

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS migrations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied REAL NOT NULL
)
"""
