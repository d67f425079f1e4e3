"""keymoments.yaml errors teach: each names the file, the line (counted by hand in
the texts below), the key path and the closest valid key or value."""

from __future__ import annotations

import inspect

import pytest

import keymoments as km
from keymoments import errors
from keymoments.config import load_config, load_config_text

SOURCE = """\
name: shop
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: cid}
    event_type: {value: order_placed}
    ts: placed_at
"""


def config_error(text: str, **kw) -> km.ConfigError:
    with pytest.raises(km.ConfigError) as info:
        load_config_text(text, path="ws/keymoments.yaml", env=kw.get("env", {}))
    return info.value


# (yaml, line, key path, suggestion): the line is where the bad key is written
UNKNOWN_KEYS = [
    pytest.param("name: shop\nnmae: shop\n", 2, "nmae", "name", id="top"),
    pytest.param("name: shop\n\nidentity:\n  phone_regoin: BR\n", 4, "identity.phone_regoin",
                 "phone_region", id="identity"),
    pytest.param(SOURCE + "    chanel: {value: web}\n", 8, "sources.orders.chanel", "channel",
                 id="source"),
    pytest.param(SOURCE + "    csv:\n      header: true\n      delimeter: ';'\n", 10,
                 "sources.orders.csv.delimeter", "delimiter", id="csv-options"),
    pytest.param(SOURCE.replace("    ts: placed_at\n", "    ts:\n      column: placed_at\n"
                                "      timezon: Europe/Lisbon\n"), 9,
                 "sources.orders.ts.timezon", "timezone", id="timestamp"),
    pytest.param(SOURCE.replace(
        "    event_type: {value: order_placed}\n    ts: placed_at\n",
        "    events:\n"
        "      - {event_type: {value: order_placed}, ts: placed_at}\n"
        "      - event_type: {value: order_shipped}\n"
        "        ts: {column: shipped_at, fromat: '%d/%m/%Y'}\n"), 9,
        "sources.orders.events.1.ts.fromat", "format", id="event-in-list"),
    pytest.param(SOURCE + "    measures:\n      value: {column: amount, defualt: 0}\n", 9,
                 "sources.orders.measures.value.defualt", "default",
                 id="measure-named-like-a-field"),
    pytest.param(SOURCE.replace("  orders:", "  csv:") + "    chanel: {value: web}\n", 8,
                 "sources.csv.chanel", "channel", id="source-named-like-a-section"),
    pytest.param("taxonomy:\n  event_types:\n    Resolve Ticket: {stag: support}\n", 3,
                 "taxonomy.event_types.Resolve Ticket.stag", "stage", id="capitalised-key"),
    pytest.param("taxonomy:\n  patterns:\n    - match: refund\n      momnet: support\n", 4,
                 "taxonomy.patterns.0.momnet", "moment", id="pattern"),
]


@pytest.mark.parametrize("text, line, key, suggestion", UNKNOWN_KEYS)
def test_unknown_key_names_file_line_key_and_closest(text, line, key, suggestion):
    err = config_error(text)
    assert (err.file, err.line, err.key) == ("ws/keymoments.yaml", line, key)
    assert err.hint.startswith(f"did you mean {suggestion!r}?")
    assert str(err).startswith(f"ws/keymoments.yaml:{line}: {key}: unknown key")


def test_typo_of_a_required_key_reports_the_typo_not_the_missing_key():
    # pydantic reports 'ts: field required' first; the typo is what the user must fix
    err = config_error(SOURCE.replace(
        "    event_type: {value: order_placed}\n    ts: placed_at\n",
        "    events:\n      - event_type: {value: order_placed}\n        tss: placed_at\n"))
    assert (err.line, err.key) == (8, "sources.orders.events.0.tss")
    assert "did you mean 'ts'?" in str(err)


def test_no_close_key_lists_the_valid_ones():
    err = config_error("identity:\n  zzzzzz: 1\n")
    assert err.hint == "valid keys here: email_strip_plus, normalise, phone_region"


@pytest.mark.parametrize("text, line, key, suggestion", [
    pytest.param("taxonomy:\n  event_types:\n    checkout: {stage: purchse}\n", 3,
                 "taxonomy.event_types.checkout.stage", "purchase", id="taxonomy-stage"),
    pytest.param("taxonomy:\n  event_types:\n    refund:\n      moment: resolutoin\n", 4,
                 "taxonomy.event_types.refund.moment", "resolution", id="taxonomy-moment"),
    pytest.param("identity:\n  normalise:\n    mail: emial\n", 3, "identity.normalise.mail",
                 "email", id="normaliser"),
    pytest.param(SOURCE + "    stage: {value: purchse}\n", 8, "sources.orders.stage",
                 "purchase", id="source-stage-constant"),
    pytest.param(SOURCE + "    stage: {column: kind, map: {buy: purchase, help: suport}}\n", 8,
                 "sources.orders.stage", "support", id="source-stage-map"),
    pytest.param(SOURCE + "    timestamps: {timezone: Europe/Amsterdm}\n", 8,
                 "sources.orders.timestamps.timezone", "Europe/Amsterdam", id="source-timezone"),
    pytest.param(SOURCE.replace("placed_at", "{column: placed_at, timezone: America/Sao_Paolo}"), 7,
                 "sources.orders.ts.timezone", "America/Sao_Paulo", id="field-timezone"),
])
def test_wrong_value_suggests_the_closest(text, line, key, suggestion):
    err = config_error(text)
    assert (err.line, err.key) == (line, key)
    assert f"did you mean {suggestion!r}?" in str(err)


def test_every_time_zone_accepted_is_one_duckdb_converts_with():
    """The oracle is DuckDB itself: a name the config accepts converts a time."""
    import duckdb

    from keymoments.config.models import _known_timezone

    con = duckdb.connect()
    for name in ("UTC", "Europe/Amsterdam", "america/sao_paulo", "Asia/Kolkata", "EST"):
        assert _known_timezone(name) == name
        con.execute("SELECT timezone(?, TIMESTAMP '2024-01-01 10:00')", [name]).fetchone()
    with pytest.raises(duckdb.Error):  # and one it refuses, DuckDB cannot use either
        con.execute("SELECT timezone('Europe/Amsterdm', TIMESTAMP '2024-01-01 10:00')").fetchone()


@pytest.mark.parametrize("region, ok", [("US", True), ("gb", True), ("BR", True), ("ZZ", False),
                                        ("USA", False), ("", False)])
def test_a_phone_region_must_be_one_libphonenumber_knows(region, ok):
    text = f"identity:\n  phone_region: {region!r}\n"
    if ok:
        from keymoments.config.loader import load_config_text

        assert load_config_text(text).identity.phone_region == region.upper()
    else:
        err = config_error(text)
        assert (err.line, err.key) == (2, "identity.phone_region")
        assert "two-letter country code" in str(err)


def test_a_stage_from_a_column_is_checked_per_row_not_here():
    cfg = load_config_text(SOURCE + "    stage: kind\n", env={})
    assert cfg.sources["orders"].stage.column == "kind"
    cfg = load_config_text(SOURCE + "    stage: {value: Purchase}\n", env={})  # any case
    assert cfg.sources["orders"].stage.value == "Purchase"


@pytest.mark.parametrize("text, line", [
    ("name: shop\nsources:\n  a: [1, 2\n  b: 3\n", 4),  # unclosed flow list
    ("name: shop\nidentity:\n\tphone_region: US\n", 3),  # a tab indents
    ("name: shop\nname: again\n", 2),  # duplicate key
])
def test_bad_yaml_names_the_line(text, line):
    err = config_error(text)
    assert err.line == line
    assert str(err).startswith(f"ws/keymoments.yaml:{line}: ")
    assert "YAML" in str(err) or "duplicate" in str(err)


def test_not_utf8_names_the_byte(tmp_path):
    (tmp_path / "keymoments.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(km.ConfigError, match=r"not UTF-8 text \(invalid .* at byte 9\)"):
        load_config(tmp_path / "keymoments.yaml")


def test_top_level_must_be_a_mapping():
    err = config_error("- orders\n- tickets\n")
    assert err.line == 1 and "mapping" in str(err)


def test_empty_file_is_all_defaults():
    cfg = load_config_text("", env={})
    assert (cfg.name, cfg.database, cfg.identity.phone_region, cfg.sources) == (
        "keymoments", "keymoments.duckdb", "US", {})


def test_missing_config_file(tmp_path):
    with pytest.raises(km.ConfigError, match="config file not found") as info:
        load_config(tmp_path / "keymoments.yaml")
    assert str(tmp_path / "keymoments.yaml") in str(info.value)
    assert "keymoments init" in str(info.value)
    with pytest.raises(km.WorkspaceError, match="keymoments.yaml is missing") as info:
        km.open(tmp_path)
    assert "keymoments init" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # opening did not create anything


def test_env_overrides_nested_keys(tmp_path, monkeypatch):
    (tmp_path / "keymoments.yaml").write_text(
        "name: shop\nidentity:\n  phone_region: US\n", encoding="utf-8")
    monkeypatch.setenv("KEYMOMENTS_IDENTITY__PHONE_REGION", "BR")
    monkeypatch.setenv("KEYMOMENTS_IDENTITY__EMAIL_STRIP_PLUS", "true")
    monkeypatch.setenv("KEYMOMENTS_NAME", "2024")  # a string setting stays a string
    monkeypatch.setenv("KEYMOMENTS_DEBUG", "1")  # not a config key: ignored
    monkeypatch.setenv("KEYMOMENTS_WORKSPACE", str(tmp_path))  # idem
    cfg = load_config(tmp_path / "keymoments.yaml")
    assert (cfg.identity.phone_region, cfg.identity.email_strip_plus, cfg.name) == (
        "BR", True, "2024")
    with km.open(tmp_path) as ws:  # the workspace reads the same layers
        assert ws.config.identity.phone_region == "BR"


def test_env_override_of_a_source_field():
    env = {"KEYMOMENTS_SOURCES__ORDERS__PATH": "exports/2024/*.csv"}
    cfg = load_config_text(SOURCE, env=env)
    assert cfg.sources["orders"].path == "exports/2024/*.csv"
    assert cfg.sources["orders"].identifiers["customer_id"].column == "cid"  # rest kept


def test_bad_env_override_names_the_variable():
    err = config_error("name: shop\nidentity:\n  phone_region: US\n",
                       env={"KEYMOMENTS_IDENTITY__PHONE_REGOIN": "BR"})
    assert err.file == "environment variable KEYMOMENTS_IDENTITY__PHONE_REGOIN"
    assert err.line is None  # not a line of the file
    assert "did you mean 'phone_region'?" in str(err)
    err = config_error("name: shop\n", env={"KEYMOMENTS_IDENTITY__EMAIL_STRIP_PLUS": "maybe"})
    assert str(err).startswith("environment variable KEYMOMENTS_IDENTITY__EMAIL_STRIP_PLUS: "
                               "identity.email_strip_plus: ")


def public_error_classes():
    return [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
            if issubclass(obj, Exception) and obj.__module__ == errors.__name__]


def test_one_root_error():
    classes = public_error_classes()
    assert {c.__name__ for c in classes} == set(errors.__all__)
    for cls in classes:
        assert issubclass(cls, km.KeymomentsError), cls
        assert getattr(km, cls.__name__) is cls  # each is exported
        assert cls.__name__ in errors.__doc__  # and in the documented hierarchy
    assert issubclass(km.ConfigError, ValueError)
    assert issubclass(km.NotFoundError, LookupError)
    assert issubclass(km.MissingExtraError, ImportError)


def test_errors_raised_across_the_package_share_the_root(tmp_path):
    raised = []
    for attempt in (
        lambda: load_config_text("nmae: x\n"),
        lambda: km.open(tmp_path / "nowhere"),
        lambda: km.init(tmp_path).close() or km.init(tmp_path),  # twice: already exists
    ):
        with pytest.raises(km.KeymomentsError) as info:
            attempt()
        raised.append(type(info.value))
    assert raised == [km.ConfigError, km.WorkspaceError, km.WorkspaceError]


def test_missing_extra_names_the_pip_extra():
    err = km.MissingExtraError("polars", "polars")
    assert "pip install 'keymoments[polars]'" in str(err)


@pytest.mark.parametrize("field, typo, closest, key, line", [
    ("identifiers: {customer_id: custmer_id}", "custmer_id", "customer_id",
     "sources.orders.identifiers.customer_id", 5),
    ("ts: placed", "placed", "placed_at", "sources.orders.ts", 7),
    ("ts: {column: placed, format: '%Y'}", "placed", "placed_at", "sources.orders.ts", 7),
])
def test_mapping_a_missing_column_fails_at_ingest_naming_the_closest(
        make_workspace, field, typo, closest, key, line):
    text = SOURCE.replace("{customer_id: cid}", "{customer_id: customer_id}")
    mapped = ("identifiers: {customer_id: customer_id}" if "identifiers" in field
              else "ts: placed_at")
    text = text.replace(mapped, field)
    ws = make_workspace(text, {"orders.csv": "customer_id,placed_at\n42,2024-01-01T00:00:00Z\n"})
    with pytest.raises(km.ConfigError) as info:
        ws.ingest("orders")
    message = str(info.value)
    assert f"no column {typo!r}" in message
    assert f"did you mean {closest!r}?" in message
    # where: the file, the line the field is written on (counted in the text above), the key
    assert (info.value.key, info.value.line) == (key, line)
    assert info.value.file.endswith("keymoments.yaml")
    assert text.splitlines()[line - 1].strip().startswith(key.split(".")[2])
    # nothing was written
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 0


@pytest.mark.parametrize("value", ["50%", "lots", "4 G B"])
def test_a_memory_limit_duckdb_cannot_read_is_a_config_error(value):
    err = config_error(f"name: shop\nmemory_limit: '{value}'\n")
    assert (err.line, err.key) == (2, "memory_limit")
    assert "not a memory size" in str(err) and "4GB" in str(err)


@pytest.mark.parametrize("value", ["4GB", "3.5GiB", "512 mb", "3g"])
def test_every_memory_limit_accepted_is_one_duckdb_reads(value):
    import duckdb

    assert load_config_text(f"memory_limit: '{value}'\n").memory_limit == value
    duckdb.connect().execute(f"SET memory_limit = '{value}'")  # raises if not


def test_a_join_key_that_is_not_a_column_names_the_source_line_and_closest(make_workspace):
    text = """\
name: shop
sources:
  reviews:
    path: reviews.csv
    identifiers: {customer_id: cid}
    event_type: {value: review_posted}
    ts: at
    joins:
      - path: orders.csv
        on: {orderid: order_id}
        columns: [channel]
"""
    ws = make_workspace(text, {"reviews.csv": "cid,at,order_id\n1,2024-01-01T00:00:00Z,o1\n",
                               "orders.csv": "order_id,channel\no1,web\n"})
    with pytest.raises(km.ConfigError) as info:
        ws.ingest("reviews")
    err = info.value
    assert (err.key, err.line) == ("sources.reviews.joins.0.on.orderid", 10)
    assert "join key 'orderid' is not a column of the source" in str(err)
    assert "did you mean 'order_id'?" in str(err) and err.file.endswith("keymoments.yaml")


@pytest.mark.parametrize("wrong, line, named", [("ts: snapshot_dt", 8, 8),
                                                ("column: churn", 10, 9)])
def test_a_missing_column_in_an_event_of_a_wide_table_names_its_line(make_workspace, wrong,
                                                                     line, named):
    """An event of a source's ``events:`` list sits at a list index in the key path
    (``events.0.ts``); a missing column there is a config error naming the line of the
    field that reads it, not a crash."""
    text = """\
name: shop
sources:
  telco:
    path: telco.csv
    identifiers: {customer_id: cid}
    events:
      - event_type: {value: account_snapshot}
        ts: snapshot_date
      - event_type:
          column: Churn
          map: {"Yes": subscription_cancelled, "No": null}
        ts: snapshot_date
"""
    old = {8: "ts: snapshot_date", 10: "column: Churn"}[line]
    lines = text.splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, wrong)
    ws = make_workspace("".join(lines), {"telco.csv": "cid,snapshot_date,Churn\n"
                                                     "c1,2024-01-01T00:00:00Z,Yes\n"})
    with pytest.raises(km.ConfigError) as info:
        ws.ingest("telco")
    err = info.value
    assert "no column" in str(err) and err.file.endswith("keymoments.yaml")
    assert err.line == named and err.key.startswith("sources.telco.events.")
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_a_field_no_json_record_has_loads_with_a_warning_naming_the_line(make_workspace):
    """JSON lines records may leave out empty fields, so a mapped field that no record
    has is not an error; the load says so, with the closest field the records have."""
    text = """\
name: shop
sources:
  posts:
    path: posts.jsonl
    identifiers: {customer_id: cid}
    event_type: type
    ts: ts
    agent: agnet
    text: comment
"""
    rows = ('{"cid": "1", "type": "chat", "ts": "2024-01-01T00:00:00Z", "agent": "ana"}\n'
            '{"cid": "2", "type": "chat", "ts": "2024-01-02T00:00:00Z"}\n')
    ws = make_workspace(text, {"posts.jsonl": rows})
    report = ws.ingest("posts")
    assert report.rows_loaded == 2
    assert len(report.warnings) == 2
    agent, comment = report.warnings
    assert "keymoments.yaml:8: sources.posts.agent: no record has 'agnet'" in agent
    assert "did you mean 'agent'?" in agent
    assert "keymoments.yaml:9: sources.posts.text: no record has 'comment'" in comment
    assert ws.con.execute("SELECT count(agent) FROM events").fetchone()[0] == 0


@pytest.mark.parametrize("sep, shown", [(";", ";"), ("\t", "\\t"), ("|", "|")])
def test_a_header_read_as_one_column_suggests_the_delimiter(make_workspace, sep, shown):
    data = sep.join(["cid", "placed_at"]) + "\n" + sep.join(["1", "2024-01-01T00:00:00Z"]) + "\n"
    ws = make_workspace(SOURCE, {"orders.csv": data})
    with pytest.raises(km.ConfigError) as info:
        ws.ingest("orders")
    assert f"set csv: {{delimiter: '{shown}'}} on the source" in str(info.value)


@pytest.mark.parametrize("quote", ["''", "'\"\"'"])
def test_a_quote_is_one_character(quote):
    err = config_error(SOURCE + f"    csv: {{quote: {quote}}}\n")
    assert (err.line, err.key) == (8, "sources.orders.csv.quote")
    assert "a quote is one character" in str(err)


@pytest.mark.parametrize("rating, message", [
    ("{column: score, min: 5, max: 1}", "'min' (5) must be below 'max' (1)"),
    ("{column: score, min: 0}", "needs both 'min' and 'max'"),
    ("{column: score, scale: csat5, min: 0, max: 10}", "the scale 'csat5' runs from 1 to 5"),
    ("{column: score}", "say which scale the ratings are on: 'scale: csat5' (or nps10"),
    ("score", "say which scale the ratings are on"),
])
def test_a_rating_range_that_cannot_be_read_is_a_config_error(rating, message):
    err = config_error(SOURCE + f"    rating: {rating}\n")
    assert message in str(err)
    assert (err.line, err.key) == (8, "sources.orders.rating")


def test_a_rating_range_without_a_scale_is_stored_as_custom_and_scored_on_it(make_workspace):
    """Not as csat5 (the default scale): 3 of 0-10 is below the middle, so negative."""
    text = SOURCE.replace("cid}", "customer_id}") + "    rating: {column: score, min: 0, max: 10}\n"
    ws = make_workspace(text, {"orders.csv": "customer_id,placed_at,score\n"
                                             "1,2024-01-01T00:00:00Z,3\n"
                                             "2,2024-01-01T00:00:00Z,10\n"})
    ws.ingest("orders")
    rows = ws.con.execute("SELECT rating, rating_scale, rating_min, rating_max FROM events "
                          "ORDER BY rating").fetchall()
    assert rows == [(3.0, "custom", 0.0, 10.0), (10.0, "custom", 0.0, 10.0)]
    ws.build()
    valences = ws.con.execute("SELECT v_feedback FROM journey_events ORDER BY v_feedback"
                              ).fetchall()
    assert [round(v, 6) for (v,) in valences] == [round((3 - 5) / 5, 6), 1.0]


def test_an_env_override_inside_an_object_that_then_fails_names_the_variable():
    """The scale is checked on the whole rating, so the error's key is the rating; the
    file alone is valid, so the variable that changed the scale is named, not the
    file's line."""
    text = SOURCE + "    rating: {column: score, scale: stars5}\n"
    err = config_error(text, env={"KEYMOMENTS_SOURCES__ORDERS__RATING__SCALE": "star5"})
    assert err.file == "environment variable KEYMOMENTS_SOURCES__ORDERS__RATING__SCALE"
    assert err.line is None and "unknown rating scale 'star5'" in str(err)
    # an error of the file itself still names its line, overrides or not
    err = config_error(SOURCE + "    rating: {column: score, scale: star5}\n",
                       env={"KEYMOMENTS_NAME": "other"})
    assert (err.file, err.line) == ("ws/keymoments.yaml", 8)


def test_an_env_override_reaches_an_item_of_a_list_by_its_number():
    text = ("name: shop\njourneys:\n  types:\n    - {name: visit2, event_types: [page_view]}\n"
            "    - {name: buy, event_types: [order_placed]}\n")
    cfg = load_config_text(text, path="ws/keymoments.yaml",
                           env={"KEYMOMENTS_JOURNEYS__TYPES__1__GAP": "1h"})
    assert [t.gap for t in cfg.journeys.types] == [None, 3600.0]
    err = config_error(text, env={"KEYMOMENTS_JOURNEYS__TYPES__2__GAP": "1h"})
    assert err.file == "environment variable KEYMOMENTS_JOURNEYS__TYPES__2__GAP"
    assert "journeys.types has 2 items in the file" in str(err)


@pytest.mark.parametrize("name, fragment", [
    ("lexcon", "did you mean 'lexicon'?"), ("multilingul", "did you mean 'multilingual'?"),
    ("''", "unknown text scorer ''"),
])
def test_a_text_scorer_name_that_is_none_is_a_config_error(name, fragment):
    err = config_error(f"name: shop\nvalence:\n  text_scorer: {name}\n")
    assert (err.line, err.key) == (3, "valence.text_scorer") and fragment in str(err)


@pytest.mark.parametrize("name", ["lexicon", "multilingual", "dir:/models/x", "models/x",
                                  "my_pkg.scoring:Scorer"])
def test_the_text_scorer_names_that_load_pass_the_config(name):
    assert load_config_text(f"valence:\n  text_scorer: '{name}'\n").valence.text_scorer == name


RELATIVE_RULE = """
valence:
  rules:
    - name: late
      kind: expectation_gap
      event_types: [order_delivered]
      relative: true
      full_at: 2
"""


def test_a_relative_gap_needs_a_value_promise():
    """A promised time has no length to be a fraction of: such a rule divided two
    epoch times (a delivery a day late scored as 0.0001 late, on time)."""
    err = config_error(RELATIVE_RULE)
    assert "relative: true needs a value promise" in err.message
    assert (err.key, err.line) == ("valence.rules.0", 4)  # (the rule's first line)
    cfg = load_config_text(RELATIVE_RULE + "      measure: wait_seconds\n", env={})
    assert cfg.valence.rules[0].relative


@pytest.mark.parametrize("text, line, key, words", [
    (SOURCE + "    rating: {column: score, scale: custom, min: .nan, max: 10}\n", 8,
     "sources.orders.rating.min", "finite number"),
    ("actions:\n  rules:\n  - name: r\n    trigger: {on: valley}\n    when: {min_value: .inf}\n"
     "    action: {kind: file}\n", 5, "actions.rules.0.when.min_value", "finite number"),
    ("actions:\n  rules:\n  - name: r\n    trigger: {on: valley, within: .inf}\n"
     "    action: {kind: file}\n", 4, "actions.rules.0.trigger.within", "at most 100 years"),
    ("outcomes:\n  churn_within: 1000000y\n", 2, "outcomes.churn_within", "at most 100 years"),
])
def test_a_number_in_the_config_is_finite(text, line, key, words):
    """YAML's .nan and .inf passed `config check` and then failed a load or a live update
    inside a query (Binder Error: column "nan"; an overflow); refused here, where they are."""
    err = config_error(text)
    assert (err.line, err.key) == (line, key) and words in str(err)


@pytest.mark.parametrize("value, read", [
    ("'2024-06-30T00:00:00Z'", "2024-06-30T00:00:00Z"),
    ("2024-06-30T00:00:00+02:00", "2024-06-30T00:00:00+02:00"),  # (YAML: a datetime)
    ("2024-06-30", "2024-06-30"),  # (YAML: a date)
    ("'2024-06-30 08:00'", "2024-06-30 08:00"),
])
def test_as_of_takes_iso_times_quoted_or_not(value, read):
    assert load_config_text(f"journeys: {{as_of: {value}}}").journeys.as_of == read


@pytest.mark.parametrize("value", ["yesterday", "'2024-13-01'", "'30/06/2024'", "42"])
def test_as_of_that_is_no_time_is_an_error_naming_it(value):
    with pytest.raises(errors.ConfigError, match=r"journeys\.as_of: not a time.*ISO 8601"):
        load_config_text(f"journeys:\n  as_of: {value}\n")


def test_as_of_without_an_offset_is_in_the_workspace_timezone(make_workspace):
    """00:00 in Amsterdam in June (CEST, +02:00) is 22:00Z the day before; a build
    with an event after as_of warns (its journey is judged at as_of with it)."""
    from datetime import datetime, timezone

    from keymoments.pipeline import resolve_as_of

    config = """
timezone: Europe/Amsterdam
journeys: {as_of: 2024-06-30}
sources:
  s:
    path: e.csv
    identifiers: {customer_id: id}
    event_type: kind
    ts: at
"""
    ws = make_workspace(config, {"e.csv": "id,kind,at\n1,visit,2024-06-29T21:00:00Z\n"})
    assert resolve_as_of(ws) == datetime(2024, 6, 29, 22, tzinfo=timezone.utc)
    ws.ingest()
    assert ws.build().warnings == ()
    (ws.root / "e.csv").write_text("id,kind,at\n1,visit,2024-06-29T21:00:00Z\n"
                                   "1,visit,2024-06-29T22:30:00Z\n")
    ws.ingest()
    (warning,) = ws.build().warnings
    assert warning.startswith("1 event(s) are dated after journeys.as_of (2024-06-29 22:00 UTC)")
    idle = ws.con.execute("SELECT min(idle_s) FROM journeys").fetchone()[0]
    assert idle == -30 * 60.0  # (the journey's last event half an hour after as_of)


@pytest.mark.parametrize("fmt, code", [("%s", "%s"), ("%Y-%m-%d %:z", "%:"), ("%k:%M", "%k")])
def test_a_format_the_reader_cannot_read_is_a_config_error(fmt, code):
    """It passed `config check` and failed the load with an internal error."""
    text = ("sources:\n  s:\n    path: a.csv\n    identifiers: {id: id}\n    event_type: k\n"
            f"    ts: {{column: t, format: '{fmt}'}}\n")
    with pytest.raises(errors.ConfigError, match=rf":6: sources\.s\.ts\.format: .*{code} is not"):
        load_config_text(text)
    ok = text.replace(fmt, "%d/%m/%Y %H:%M")
    assert load_config_text(ok).sources["s"].ts.format == "%d/%m/%Y %H:%M"


@pytest.mark.parametrize("types, fragment", [
    ("[{name: slow, event_types: [complaint]}]\n  catch_all: slow",
     "catch_all 'slow' is also the name of a journey type"),
    ("[{name: t, key: ticket, event_types: [complaint]}]",
     "journey type 't' has a 'key': it is every event that carries a ticket reference"),
    ("[{name: t, key: ticket, stages: [support]}]", "'event_types' and 'stages' would be ignored"),
])
def test_journey_types_that_would_be_read_otherwise_than_written_are_errors(types, fragment):
    """A catch-all named as a type judged that type's journeys as the catch-all's; a
    keyed type's event_types were silently ignored (it is every event with its key)."""
    with pytest.raises(errors.ConfigError, match=fragment):
        load_config_text(f"journeys:\n  types: {types}\n")


def test_a_build_warns_of_event_types_the_config_names_and_no_event_has(make_workspace):
    """A misspelt event type made a rule that never fires, silently; the build now
    says which rule, which name, and the stored name closest to it."""
    config = """
valence:
  rules:
    - {name: complaint_wait, kind: constant, valence: -0.5, event_types: [complaint_typo]}
journeys:
  types:
    - {name: complaints, event_types: [complaint], end: [complaint_closed]}
sources:
  s:
    path: e.csv
    identifiers: {customer_id: id}
    event_type: kind
    ts: at
"""
    ws = make_workspace(config, {"e.csv": "id,kind,at\n1,complaint,2024-01-01T00:00:00Z\n"})
    ws.ingest()
    warnings = ws.build().warnings
    assert warnings == (
        "valence rule 'complaint_wait' names event type(s) no event has: 'complaint_typo' "
        "(did you mean 'complaint'?); check the names in keymoments.yaml against the "
        "stored events' types",
        "journey type 'complaints' names event type(s) no event has: 'complaint_closed'; "
        "check the names in keymoments.yaml against the stored events' types")


def test_a_catch_all_named_as_a_default_journey_type_is_an_error():
    with pytest.raises(errors.ConfigError, match="catch_all 'purchase' is also the name"):
        load_config_text("journeys: {catch_all: purchase}\n")


RULE = "valence:\n  rules:\n    - {name: r, kind: %s, event_types: [x], %s reason: %r}\n"


@pytest.mark.parametrize("kind, extra, reason, message", [
    ("expectation_gap", "full_at: 2,", "late by {value}",
     "rule 'r': reason: {value} is not filled by an expectation_gap rule; an expectation_gap "
     "rule's reason may use {event_type}, {gap}"),
    ("measure_above", "measure: m, threshold: 1, valence: -0.5,", "{gap} slow",
     "{gap} is not filled by a measure_above rule"),
    ("constant", "valence: -0.5,", "{event_type} took {gap}", "may use {event_type}"),
    ("constant", "valence: -0.5,", "{eventtype} failed", "{eventtype} is not a placeholder"),
])
def test_a_reason_placeholder_the_rule_does_not_fill_is_a_config_error(kind, extra, reason,
                                                                        message):
    """It printed its own name ('late by value', '{event_type}' as 'event_type')."""
    err = config_error(RULE % (kind, extra, reason))
    assert message in str(err), str(err)
    assert err.line == 3


@pytest.mark.parametrize("kind, extra, reason", [
    ("expectation_gap", "full_at: 2,", "{gap} on {event_type}"),
    ("measure_above", "measure: m, threshold: 1, valence: -0.5,", "{value}s {event_type}"),
    ("repeat_contact", "valence: -0.5,", "again: {event_type}"),
    ("constant", "valence: -0.5,", "no placeholder"),
])
def test_the_placeholders_a_rule_fills_pass(kind, extra, reason):
    assert load_config_text(RULE % (kind, extra, reason), path="k.yaml", env={})


@pytest.mark.parametrize("valence, message", [
    ("{weights: {rules: -1}}", "weights.rules is -1"),
    ("{weights: {text: .inf}}", "weights.text: Input should be a finite number"),
    ("{weights: {feedback: 0, rules: 0, text: 0}}", "every weight is 0"),
    ("{neutral: {ces7: 9}}", "neutral.ces7 is 9, off the scale: ces7 runs from 1 to 7"),
    ("{neutral: {nps10: -1}}", "neutral.nps10 is -1"),
])
def test_a_weight_or_neutral_point_that_cannot_hold_is_a_config_error(valence, message):
    """A negative rules weight made a failed payment a good moment; CES 9 as neutral
    scored a 7, 'very easy', as negative."""
    err = config_error(f"valence: {valence}\n")
    assert message in str(err), str(err)


def test_a_custom_neutral_outside_a_source_range_names_the_source():
    """``neutral: {custom: 8}`` counts for every unnamed range: 8 lies outside 1-5."""
    text = SOURCE + "    rating: {column: score, min: 1, max: 5}\nvalence: {neutral: {custom: 8}}\n"
    err = config_error(text)
    assert "valence.neutral.custom is 8, outside the range 1 to 5 of source 'orders'" in str(err)
    ok = SOURCE + "    rating: {column: score, min: 0, max: 10}\nvalence: {neutral: {custom: 8}}\n"
    assert load_config_text(ok, path="k.yaml", env={})
