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
    # For browsing with sqlite-utils, datasette or the sqlite3 shell: no column named after
    # an SQL keyword (`values` had to be quoted in every query), and views with plain names
    # that join what a reader wants to see (docs/cli.md, "The ledger"). The best trial is
    # chosen as records.best_trial chooses it: best metric in the experiment's direction,
    # ties to the earlier trial.
    (4, "browsing views", """
ALTER TABLE metrics RENAME COLUMN "values" TO metric_values;
CREATE VIEW experiments_view AS
SELECT e.id, e.name, e.state, e.searcher, e.metric, e.smaller_is_better, e.backend, e.owner,
       datetime(e.created, 'unixepoch') AS created_utc,
       datetime(e.ended, 'unixepoch') AS ended_utc,
       (SELECT COUNT(*) FROM trials t WHERE t.experiment = e.id) AS trials,
       best.id AS best_trial, best.best_metric, e.message, e.root
FROM experiments e
LEFT JOIN trials best ON best.experiment = e.id AND best.id = (
    SELECT t.id FROM trials t JOIN experiments own ON own.id = t.experiment
    WHERE t.experiment = e.id AND t.best_metric IS NOT NULL
    ORDER BY CASE WHEN own.smaller_is_better THEN t.best_metric ELSE -t.best_metric END, t.id
    LIMIT 1);
CREATE VIEW trials_view AS
SELECT t.experiment, e.name AS experiment_name, t.id AS trial, t.state, t.params, e.metric,
       t.best_metric, t.best_length, t.latest_metric, t.length, t.target_length, t.restarts,
       t.bracket, t.parent, t.latest_checkpoint AS checkpoint, t.best_checkpoint, t.message
FROM trials t JOIN experiments e ON e.id = t.experiment;
CREATE VIEW validations_view AS
SELECT m.experiment, m.trial, m.segment, m.length, datetime(m.time, 'unixepoch') AS time_utc,
       e.metric, (SELECT j.value FROM json_each(m.metric_values) j WHERE j.key = e.metric)
       AS value, m.metric_values AS all_metrics
FROM metrics m JOIN experiments e ON e.id = m.experiment
WHERE m.kind = 'validation'
"""),
    # Large experiments: the unapplied events and the snapshots are found without reading
    # every event row (a row's `applied` sits after its snapshot, in overflow pages).
    # Events recorded from now on carry a snapshot only every few events ('' otherwise:
    # sync restores the latest one and replays the events after it).
    (5, "indexes for large experiments", """
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
