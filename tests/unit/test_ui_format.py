"""The board's pure formatting helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loom_ui.format import (
    BoardFilter,
    announce_curl,
    attention_level,
    board_query,
    diff_stats,
    duration,
    parse_board_query,
    plural,
    progress_segments,
    relative_time,
    status_color,
    status_label,
    unified_diff,
    waited_for,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_relative_time_reads_like_speech() -> None:
    assert relative_time(None, NOW) == "—"
    assert relative_time(NOW - timedelta(seconds=3), NOW) == "just now"
    assert relative_time(NOW - timedelta(seconds=42), NOW) == "42 s ago"
    assert relative_time(NOW - timedelta(minutes=4), NOW) == "4 min ago"
    assert relative_time(NOW - timedelta(hours=3, minutes=5), NOW) == "3 h 5 min ago"
    assert relative_time(NOW - timedelta(hours=30), NOW) == "30 h ago"
    assert relative_time(NOW - timedelta(days=3), NOW) == "3 d ago"


def test_waited_for_never_goes_negative() -> None:
    assert waited_for(NOW + timedelta(seconds=5), NOW) == "0 s"
    assert waited_for(NOW - timedelta(hours=2), NOW) == "2 h"


def test_duration_picks_a_readable_unit() -> None:
    assert duration(None, NOW) == ""
    assert duration(NOW, NOW + timedelta(milliseconds=850)) == "850 ms"
    assert duration(NOW, NOW + timedelta(seconds=12.34)) == "12.3 s"
    assert duration(NOW, NOW + timedelta(minutes=4, seconds=5)) == "4 min 5 s"
    assert duration(NOW, NOW + timedelta(minutes=4)) == "4 min"
    assert duration(NOW, NOW + timedelta(hours=2, minutes=10)) == "2 h 10 min"


def test_statuses_have_labels_and_colours_with_attention_for_failed_and_review() -> None:
    assert status_label("awaiting_review") == "Awaiting review"
    assert status_label(None) == "Pending"
    assert status_label("something_new") == "Something new"
    assert status_color("failed") == "red"
    assert status_color("awaiting_review") == "amber"
    assert status_color("completed") == "green"
    assert status_color(None) == "gray"
    assert attention_level("failed") == "failed"
    assert attention_level("awaiting_review") == "review"
    assert attention_level("open") == ""


def test_plural_uses_thousands_separators() -> None:
    assert plural(1, "Candidate") == "1 Candidate"
    assert plural(5000, "Candidate") == "5,000 Candidates"


def test_progress_segments_skip_empty_statuses_in_status_order() -> None:
    segments = progress_segments({"completed": 1, "not_started": 2, "running": 0})
    assert [(s.status, s.count, s.percent) for s in segments] == [("not_started", 2, 66.67), ("completed", 1, 33.33)]
    assert progress_segments({}) == []


def test_unified_diff_tags_lines_for_colouring() -> None:
    lines = unified_diff("values.yaml", "image: v1\nreplicas: 2\n", "image: v2\nreplicas: 2\n")
    assert [d.kind for d in lines] == ["meta", "meta", "hunk", "del", "add", "ctx"]
    assert lines[0].text == "--- a/values.yaml"
    assert lines[3].text == "-image: v1"
    assert lines[4].text == "+image: v2"
    assert diff_stats(lines) == (1, 1)


def test_unified_diff_of_a_new_file_comes_from_dev_null() -> None:
    lines = unified_diff("NEW.md", "", "hello\n")
    assert lines[0].text == "--- /dev/null"
    assert diff_stats(lines) == (1, 0)


def test_board_filter_round_trips_through_the_url_query() -> None:
    f = BoardFilter(text="pay", kind="service", attention=True, metadata={"team": "payments & co"})
    query = board_query(f)
    assert query == "?q=pay&kind=service&attention=1&m.team=payments+%26+co"
    from urllib.parse import parse_qsl

    assert parse_board_query(dict(parse_qsl(query[1:]))) == f
    assert board_query(BoardFilter()) == ""
    assert not parse_board_query({}).active


def test_announce_curl_posts_to_the_registry() -> None:
    line = announce_curl("http://localhost:3000/")
    assert line.startswith("curl -X POST http://localhost:3000/api/registry/announce ")
    assert '"migratorUrl"' in line
