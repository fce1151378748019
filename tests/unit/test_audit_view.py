"""The audit page's filter round-trips through its URL, and names the API's CSV of the same events."""

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

from loom_backend.domain import EventType, StepEvent
from loom_ui.views.audit import (
    AuditFilter,
    audit_href,
    audit_query,
    audit_row,
    checked,
    csv_href,
    parse_audit_query,
    service_filters,
    showing,
)


def test_a_filter_survives_the_trip_through_its_url() -> None:
    f = AuditFilter("run_started", "ana", "checkout", "2026-11-01", "2026-11-03", page=3)
    query = audit_query(f)
    assert query == "?type=run_started&actor=ana&candidate=checkout&from=2026-11-01&to=2026-11-03&page=3"
    assert parse_audit_query(dict(parse_qsl(query[1:]))) == (f, [])
    assert audit_query(AuditFilter()) == ""


def test_what_the_url_gets_wrong_is_left_out_and_said() -> None:
    f, problems = parse_audit_query({"type": "exploded", "from": "yesterday", "page": "x", "actor": " ana "})
    assert f == AuditFilter(actor="ana")
    assert len(problems) == 2 and "exploded" in problems[0] and "yesterday" in problems[1]
    f, problems = parse_audit_query({"from": "2026-11-05", "to": "2026-11-01"})
    assert (f.date_from, f.date_to) == ("", "") and "after" in problems[0]


def test_the_to_day_counts_to_its_end_for_the_service() -> None:
    kw = service_filters(AuditFilter("step_completed", date_from="2026-11-01", date_to="2026-11-01"))
    assert kw["event_type"] is EventType.STEP_COMPLETED
    assert kw["since"] == datetime(2026, 11, 1, tzinfo=UTC)
    assert kw["until"] == datetime(2026, 11, 2, tzinfo=UTC)
    assert service_filters(AuditFilter())["since"] is None


def test_the_csv_link_carries_the_filter_in_the_apis_names_without_the_page() -> None:
    href = csv_href("base image", AuditFilter("run_started", "ana", "checkout", "2026-11-01", page=4))
    url = urlsplit(href)
    assert url.path == "/api/migrations/base%20image/events.csv"
    assert dict(parse_qsl(url.query)) == {
        "type": "run_started",
        "actor": "ana",
        "candidateId": "checkout",
        "since": "2026-11-01T00:00:00+00:00",
    }
    assert csv_href("", AuditFilter()) == "/api/events.csv"
    assert (audit_href(""), audit_href("a/b")) == ("/audit", "/migrations/a%2Fb/audit")


def test_a_filter_typed_in_the_form_starts_at_its_first_page() -> None:
    assert checked(AuditFilter(actor="ana", page=7)) == (AuditFilter(actor="ana"), [])


def test_showing_counts_the_rows_of_this_page() -> None:
    assert showing(AuditFilter(page=2), 50, 234) == "Events 51 to 100 of 234"
    assert showing(AuditFilter(), 0, 0) == "No events"
    assert showing(AuditFilter(page=9), 0, 12) == "No events on page 9"


def test_a_row_links_its_migration_and_candidate_and_says_what_happened() -> None:
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    e = StepEvent(
        id=7,
        run_id="m__c",
        migration_id="m",
        candidate_id="c",
        step_name="bump",
        event_type=EventType.STEP_COMPLETED,
        status="failed",
        actor="ana",
        metadata={"error": "boom"},
        created_at=at,
    )
    row = audit_row(e, at)
    assert (row.migration_href, row.candidate_href) == ("/migrations/m", "/migrations/m/candidates/c")
    assert (row.label, row.status, row.actor, row.detail) == ("Step failed", "Failed", "ana", "error: boom")
