"""Where one keymoments ingest spends its time: per phase and per SQL statement.

Runs ``ws.ingest("events")`` on the bench export into a fresh workspace with every
phase function of :mod:`keymoments.sources.ingest` wrapped in a timer and the
workspace's DuckDB connection wrapped so each ``execute`` is timed (nothing in
``src/`` is changed; the wrappers live in this process only). Then, optionally, a
few what-if experiments on the same data (``--experiments``) that time cheaper
variants of the costliest statements.

    python bench/profile_ingest.py --size 1000000 --format parquet --experiments
    python bench/profile_ingest.py --size 1000000 --format csv
    python bench/profile_ingest.py --size 1000000 --format csv --pyinstrument   # Python-level
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402

PHASES = ["stage_file", "_apply_joins", "_stage_phones", "compile_source", "_stage_taxonomy",
          "_classify", "_write_events", "_write_quarantine", "stitch", "_refresh_people",
          "_drop_temps"]


def _label(sql: str) -> str:
    text = re.sub(r"\s+", " ", sql).strip()
    m = re.match(r"(CREATE OR REPLACE TEMP (?:TABLE|VIEW) \w+|INSERT INTO \w+|DELETE FROM \w+|"
                 r"UPDATE \w+|ALTER TABLE \w+|SELECT|BEGIN TRANSACTION|COMMIT|DESCRIBE \S+|DROP \w+)",
                 text)
    head = m.group(1) if m else text[:40]
    if head == "SELECT":
        head = "SELECT " + text[7:60]
    return head


class TimedCon:
    """A DuckDB connection whose ``execute`` calls are timed, tagged with the phase."""

    def __init__(self, con, stack: list[str]) -> None:
        self._con, self._stack = con, stack
        self.log: list[tuple[str, str, float]] = []

    def execute(self, sql, *args):
        t = time.perf_counter()
        result = self._con.execute(sql, *args)
        self.log.append((self._stack[-1] if self._stack else "ingest_source", _label(sql),
                         time.perf_counter() - t))
        return result

    def sql(self, *a, **kw):
        return self._con.sql(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._con, name)


def instrument(stack: list[str], phase_times: dict[str, float]) -> None:
    from keymoments.sources import ingest as mod

    for name in PHASES:
        fn = getattr(mod, name)

        def wrapped(*a, __fn=fn, __name=name, **kw):
            stack.append(__name)
            t = time.perf_counter()
            try:
                return __fn(*a, **kw)
            finally:
                phase_times[__name] += time.perf_counter() - t
                stack.pop()

        setattr(mod, name, wrapped)


def workspace(root: Path, data_file: Path):
    import keymoments as km

    km.init(root).close()
    (root / "keymoments.yaml").write_text(_data.mapping_yaml(data_file, "events"))
    return km.open(root)


def profile(size: int, fmt: str, seed: int, use_pyinstrument: bool) -> dict:
    files = _data.generate(size, seed)
    stack: list[str] = []
    phase_times: dict[str, float] = defaultdict(float)
    instrument(stack, phase_times)
    tmp = Path(tempfile.mkdtemp(prefix="profile-", dir=_data.OUT))
    try:
        ws = workspace(tmp / "ws", files[fmt])
        timed = TimedCon(ws.con, stack)
        ws.con = timed
        prof = None
        if use_pyinstrument:
            from pyinstrument import Profiler

            prof = Profiler(interval=0.005)
            prof.start()
        t = time.perf_counter()
        report = ws.ingest("events")
        total = time.perf_counter() - t
        if prof is not None:
            prof.stop()
            print(prof.output_text(unicode=False, color=False, show_all=False))
        # and again: everything is a duplicate
        timed.log.append(("--- re-ingest ---", "", 0.0))
        phase_times_first = dict(phase_times)
        phase_times.clear()
        t = time.perf_counter()
        report2 = ws.ingest("events")
        total2 = time.perf_counter() - t
        ws.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    split = timed.log.index(("--- re-ingest ---", "", 0.0))
    return {"size": size, "format": fmt, "total_s": total, "report": report.as_dict(),
            "phases": phase_times_first, "statements": timed.log[:split],
            "reingest_total_s": total2, "reingest_report": report2.as_dict(),
            "reingest_phases": dict(phase_times), "reingest_statements": timed.log[split + 1:]}


def print_profile(p: dict, prefix: str = "") -> None:
    total = p[prefix + "total_s"]
    print(f"\n== {p['size']:,} rows {p['format']} {'re-ingest' if prefix else 'ingest'}: "
          f"{total:.2f} s")
    phases = p[prefix + "phases"]
    print(f"{'phase':28} {'s':>8} {'%':>6}")
    for name, s in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"{name:28} {s:8.2f} {100 * s / total:5.1f}%")
    outside = total - sum(s for n, s in phases.items())
    print(f"{'(outside these: mapping query, UPDATE events, COMMIT, ...)':28} {outside:8.2f} "
          f"{100 * outside / total:5.1f}%")
    agg: dict[tuple[str, str], list[float]] = defaultdict(list)
    for phase, label, s in p[prefix + "statements"]:
        agg[(phase, label)].append(s)
    print(f"\n{'phase':18} {'statement':58} {'n':>4} {'s':>8} {'%':>6}")
    for (phase, label), ss in sorted(agg.items(), key=lambda kv: -sum(kv[1]))[:18]:
        print(f"{phase:18} {label[:58]:58} {len(ss):4} {sum(ss):8.2f} {100 * sum(ss) / total:5.1f}%")


# ---------------------------------------------------------------- experiments


def experiments(size: int, seed: int, fmt: str = "parquet") -> list[dict]:
    """Time the costly statements of an ingest against cheaper variants that give the
    same result (checked where it matters), on the same data."""
    import duckdb

    from keymoments.config.loader import load_config
    from keymoments.sources.mapping import compile_source
    from keymoments.sources.readers import stage_file
    from keymoments.store.schema import migrate

    files = _data.generate(size, seed)
    tmp = Path(tempfile.mkdtemp(prefix="exp-", dir=_data.OUT))
    out: list[dict] = []

    def timed(label: str, sql: str) -> float:
        c, t = time.process_time(), time.perf_counter()
        con.execute(sql)
        s, cpu = time.perf_counter() - t, time.process_time() - c
        out.append({"label": label, "wall_s": s, "cpu_s": cpu})
        print(f"{s:8.2f} s wall {cpu:8.2f} s cpu  {label}", flush=True)
        return s

    def same(a: str, b: str) -> None:
        diff = con.execute(f"SELECT (SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})) + "
                           f"(SELECT count(*) FROM (FROM {b} EXCEPT ALL FROM {a}))").fetchone()[0]
        print(f"{'':37}{a} == {b}: {'yes' if diff == 0 else f'NO ({diff} rows differ)'}")

    try:
        (tmp / "keymoments.yaml").write_text(_data.mapping_yaml(files[fmt], "events"))
        cfg = load_config(tmp / "keymoments.yaml")
        spec = cfg.sources["events"]
        con = duckdb.connect(str(tmp / "x.duckdb"))
        con.execute("SET TimeZone = 'UTC'")
        ws_con = workspace(tmp / "ws-settings", files[fmt]).con  # the settings a workspace uses
        for (setting,) in ws_con.execute(
                "SELECT name FROM duckdb_settings() WHERE name IN "
                "('preserve_insertion_order', 'threads', 'memory_limit')").fetchall():
            value = ws_con.execute(f"SELECT current_setting('{setting}')").fetchone()[0]
            con.execute(f"SET {setting} = '{value}'")
        ws_con.close()
        reader = "read_csv" if fmt == "csv" else "read_parquet"
        timed(f"plain: CREATE TABLE AS SELECT * FROM {reader} (persistent)",
              f"CREATE TABLE plain AS SELECT * FROM {reader}('{files[fmt]}')")
        if fmt == "csv":
            timed("plain: read_csv(all_varchar) into a temp table (what staging produces)",
                  f"CREATE TEMP TABLE plain_text AS SELECT * FROM read_csv('{files[fmt]}', "
                  f"all_varchar = true)")
        c, t = time.process_time(), time.perf_counter()
        stage_file(con, [str(files[fmt])], fmt, spec.csv, "_km_raw")
        out.append({"label": "stage_file (keymoments reader)", "wall_s": time.perf_counter() - t,
                    "cpu_s": time.process_time() - c})
        print(f"{out[-1]['wall_s']:8.2f} s wall {out[-1]['cpu_s']:8.2f} s cpu  {out[-1]['label']}")
        con.execute("CREATE TEMP TABLE _km_phone (raw VARCHAR, norm VARCHAR)")
        types = {r[0]: r[1] for r in con.execute("DESCRIBE _km_raw").fetchall()}
        for c in ("_km_line", "_km_file"):
            types.pop(c)
        sql = compile_source(spec, "events", types, "_km_raw", cfg.identity)

        print("-- 1. mapping query (_km_mapped)")
        timed("mapped: compiled mapping query -> temp table (as ingest does)",
              f"CREATE OR REPLACE TEMP TABLE m AS {sql}")
        no_id = re.sub(r"SELECT md5\(concat_ws\(.*?\) AS event_id, \* EXCLUDE",
                       "SELECT NULL::VARCHAR AS event_id, * EXCLUDE", sql, flags=re.S)
        assert no_id != sql
        timed("mapped without event_id (=> cost of md5 + map-to-text casts)",
              f"CREATE OR REPLACE TEMP TABLE m_x AS {no_id}")
        i = sql.index("AS _km_present,") + len("AS _km_present,")
        # the checks are one CASE giving the first fault as a struct (field, value, reason)
        no_checks = (sql[:i] + " NULL::STRUCT(f VARCHAR, v VARCHAR, r VARCHAR) AS _km_err"
                     + sql[sql.index("\n  FROM ", i):])
        fast_id = re.sub(
            r"SELECT md5\(concat_ws\(.*?\) AS event_id, \* EXCLUDE",
            "SELECT hash('events', event_type, ts, anchor, identifiers, channel, agent, rating, "
            "text, refs, measures, expected_ts, expected_value, attributes, language, stage) "
            "AS event_id, * EXCLUDE", sql, flags=re.S)
        timed("mapped with hash(typed fields) as id (64-bit; no text casts of maps)",
              f"CREATE OR REPLACE TEMP TABLE m_x AS {fast_id}")
        timed("mapped without the validation CASE chains (=> their cost)",
              f"CREATE OR REPLACE TEMP TABLE m_x AS {no_checks}")
        # clean each text column once (trim + null tokens), then map over the clean view;
        # the compiler is told the columns are already text ("CLEAN") so it does not
        # clean them again at every use
        nulls = ", ".join(f"'{v}'" for v in spec.csv.null_values)
        text_cols = [c for c, t in types.items() if t == "VARCHAR"]
        clean = ", ".join(
            f"(CASE WHEN \"{c}\" IN ({nulls}) THEN NULL "
            f"WHEN regexp_full_match(\"{c}\", '\\S(.*\\S)?', 's') THEN \"{c}\" "
            f"ELSE nullif(trim(\"{c}\", ' \t\r\n'), '') END) AS \"{c}\""
            for c in text_cols)
        con.execute(f"CREATE OR REPLACE TEMP VIEW _km_clean AS SELECT * REPLACE ({clean}) "
                    f"FROM _km_raw")
        clean_types = {c: ("CLEAN" if t == "VARCHAR" else t) for c, t in types.items()}
        sql_clean = compile_source(spec, "events", clean_types, "_km_clean", cfg.identity)
        timed("mapped over columns cleaned once (trim only when needed)",
              f"CREATE OR REPLACE TEMP TABLE m_clean AS {sql_clean}")
        same("m", "m_clean")

        print("-- 2. classify (_km_rows, _km_new_events)")
        timed("classify: _km_rows GROUP BY file, line", """
            CREATE OR REPLACE TEMP TABLE r AS
            SELECT _km_file, _km_line,
                   arg_min(_km_err_field, _km_slot) FILTER (WHERE _km_err_reason IS NOT NULL) AS field,
                   arg_min(_km_err_reason, _km_slot) FILTER (WHERE _km_err_reason IS NOT NULL) AS reason,
                   count(*) FILTER (WHERE _km_present) AS n_present
            FROM m GROUP BY ALL""")
        timed("classify: _km_rows without GROUP BY (one slot per row)", """
            CREATE OR REPLACE TEMP TABLE r1 AS
            SELECT _km_file, _km_line, _km_err_field AS field, _km_err_reason AS reason,
                   _km_present::BIGINT AS n_present FROM m""")
        same("r", "r1")
        timed("classify: _km_new_events = join _km_rows + QUALIFY row_number (current)", """
            CREATE OR REPLACE TEMP TABLE n AS
            SELECT m.* FROM m JOIN r USING (_km_file, _km_line)
            WHERE r.reason IS NULL AND m._km_present
            QUALIFY row_number() OVER (PARTITION BY m.event_id ORDER BY m._km_file, m._km_line,
                                       m._km_slot) = 1""")
        timed("classify: no join (errors are on m itself) + QUALIFY", """
            CREATE OR REPLACE TEMP TABLE n1 AS
            SELECT * FROM m WHERE _km_err_reason IS NULL AND _km_present
            QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _km_file, _km_line,
                                       _km_slot) = 1""")
        same("n", "n1")
        timed("classify: no join, window only over ids that repeat", """
            CREATE OR REPLACE TEMP TABLE n2 AS
            WITH ok AS (SELECT * FROM m WHERE _km_err_reason IS NULL AND _km_present),
                 first AS (SELECT event_id, min((_km_file, _km_line, _km_slot)) AS k FROM ok
                           GROUP BY event_id HAVING count(*) > 1)
            SELECT ok.* FROM ok LEFT JOIN first f USING (event_id)
            WHERE f.event_id IS NULL OR (ok._km_file, ok._km_line, ok._km_slot) = f.k""")
        same("n", "n2")

        print("-- 3. stitch: identifiers of the new events")
        timed("stitch: _km_new_ids via lateral unnest(map_entries) GROUP BY ALL (current)", """
            CREATE OR REPLACE TEMP TABLE ids AS
            SELECT e.key || ':' || e.value AS identifier, e.key AS kind, e.value AS value,
                   min(n.ts) AS first_seen
            FROM n, unnest(map_entries(n.identifiers)) AS t(e) GROUP BY ALL""")
        timed("stitch: _km_new_ids via unnest in the projection, GROUP BY kind, value", """
            CREATE OR REPLACE TEMP TABLE ids2 AS
            SELECT kind || ':' || value AS identifier, kind, value, first_seen FROM (
                SELECT kind, value, min(ts) AS first_seen FROM (
                    SELECT unnest(map_keys(identifiers)) AS kind,
                           unnest(map_values(identifiers)) AS value, ts FROM n)
                GROUP BY kind, value)""")
        same("ids", "ids2")
        timed("stitch: _km_new_links (current)", """
            CREATE OR REPLACE TEMP TABLE links AS
            SELECT least(n.anchor, o) AS a, greatest(n.anchor, o) AS b,
                   arg_min(n.event_id, (n.ts, n.event_id)) AS event_id, min(n.ts) AS ts
            FROM (SELECT event_id, ts, anchor,
                         list_transform(map_entries(identifiers), e -> e.key || ':' || e.value) AS ids
                  FROM n WHERE cardinality(identifiers) > 1) n, unnest(n.ids) AS t(o)
            WHERE o <> n.anchor GROUP BY ALL""")

        print("-- 4. writing events (persistent table, then COMMIT)")
        migrate(con)
        cols = ("event_id, ts, {pid}, anchor, identifiers, channel, event_type, stage, NULL, refs, "
                "agent, language, rating, rating_scale, rating_min, rating_max, text, measures, "
                "expected_ts, expected_value, expectation_kind, attributes, 'events', _km_file, "
                "_km_line, 'load-x'")
        con.execute("CREATE TEMP TABLE pid AS SELECT DISTINCT anchor, 'p-' || md5(anchor)[:16] "
                    "AS person_id FROM n")
        con.execute("BEGIN")
        timed("write: INSERT INTO events, person_id NULL (current)",
              f"INSERT INTO events SELECT {cols.format(pid='NULL')} FROM n")
        timed("write: COMMIT", "COMMIT")
        con.execute("DELETE FROM events")
        con.execute("CHECKPOINT")
        con.execute("BEGIN")
        timed("write: INSERT INTO events with person_id joined in (stitch before insert)",
              f"INSERT INTO events SELECT {cols.format(pid='p.person_id')} "
              f"FROM n JOIN pid p USING (anchor)")
        timed("write: COMMIT", "COMMIT")

        print("-- 5. one pass: map, validate, dedupe and write in a single INSERT ... SELECT")
        con.execute("DELETE FROM events")
        con.execute("CHECKPOINT")
        con.execute("BEGIN")
        timed("fused: INSERT INTO events SELECT FROM (mapping) WHERE valid QUALIFY first "
              "per id AND id not stored", f"""
              INSERT INTO events SELECT {cols.format(pid='NULL')} FROM ({sql}) m
              WHERE _km_err_reason IS NULL AND _km_present
                AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = m.event_id)
              QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _km_file, _km_line,
                                         _km_slot) = 1""")
        timed("write: COMMIT", "COMMIT")

        print("-- 6. re-ingest: find what is already stored")
        timed("re-ingest: DELETE FROM new USING events (all ids already stored)",
              "DELETE FROM n USING events e WHERE e.event_id = n.event_id")
        con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Profile one keymoments ingest by phase.")
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    ap.add_argument("--seed", type=int, default=_data.SEED)
    ap.add_argument("--pyinstrument", action="store_true", help="also a Python-level profile")
    ap.add_argument("--experiments", action="store_true", help="what-if timings")
    ap.add_argument("--json", type=Path, help="write the raw profile here")
    args = ap.parse_args(argv)
    p = profile(args.size, args.format, args.seed, args.pyinstrument)
    print_profile(p)
    print_profile(p, "reingest_")
    if args.experiments:
        print(f"\n== what-if experiments, {args.size:,} rows {args.format}")
        p["experiments"] = experiments(args.size, args.seed, args.format)
    if args.json:
        args.json.write_text(json.dumps(p, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
