"""The web console in headless Chromium: each role signs in, searches, plays and seeks, and is
offered only what the policy allows (and refused if it forces the rest)."""

from __future__ import annotations

import re

import pytest

from tests.support.world import NUMBER

pytestmark = pytest.mark.integration

NAV = {
    "consultant-1": {"Search"},
    "manager-1": {"Search"},
    "coach-1": {"Search"},
    "control-1": {"Search", "Data-subject requests", "Audit trail", "Lifecycle report", "Dead letters"},
    "it-1": {"Search", "Lifecycle report", "Dead letters"},
}
ROLES = {"consultant-1": "consultant", "manager-1": "manager", "coach-1": "coach", "control-1": "internal-control",
         "it-1": "it"}
SEES = {
    "consultant-1": {"own", "restricted"},
    "manager-1": {"own", "teammate", "restricted"},
    "coach-1": {"own", "teammate", "restricted"},
    "control-1": {"own", "teammate", "elsewhere", "restricted"},
    "it-1": {"own", "teammate", "elsewhere", "restricted"},
}


def listed(tab) -> set[str]:
    """The calls in the result list, by name."""
    by_id = {str(v): k for k, v in tab.console.recordings.items()}
    hrefs = tab.page.locator("#result-table a[href^='recording.html?id=']").evaluate_all(
        "links => links.map((a) => a.getAttribute('href'))")
    return {by_id[h.split("=", 1)[1]] for h in hrefs}


def open_recording(tab, name: str) -> None:
    tab.goto(f"/console/recording.html?id={tab.console.recordings[name]}")
    tab.page.locator("#copies-table").wait_for()


def audio_responses(tab, copy_id) -> list[int]:
    return [r.status for r in tab.responses if f"/copies/{copy_id}/audio" in r.url]


@pytest.mark.parametrize("user", sorted(NAV))
def test_each_role_signs_in_and_sees_its_pages_and_only_the_calls_it_may(tab, user):
    tab.sign_in(user)
    nav = set(tab.page.locator("header nav a").all_inner_texts())
    assert nav == NAV[user]
    assert tab.page.locator("#who").inner_text() == f"{user} · {ROLES[user]}"
    assert listed(tab) == SEES[user]
    assert tab.unlabelled() == []
    tab.shot(f"search-{user}")


def test_play_and_seek_anywhere_through_range_requests(tab):
    tab.sign_in("consultant-1")
    tab.page.get_by_role("link", name=re.compile("with agent a1")).first.click()
    tab.page.locator("#copies-table").wait_for()
    copy_id = tab.console.copies["own/production"]
    tab.page.get_by_role("button", name="Play the production copy").click()
    audio = tab.page.locator("#player")
    tab.page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    duration = audio.evaluate("a => a.duration")
    assert 19 < duration < 21
    seeked = audio.evaluate("""a => new Promise((resolve) => {
        a.addEventListener('seeked', () => resolve(a.currentTime), {once: true});
        a.currentTime = 14.5;
    })""")
    assert abs(seeked - 14.5) < 0.5
    tab.page.wait_for_function("() => document.getElementById('player').currentTime > 14.8", timeout=10_000)
    assert 206 in audio_responses(tab, copy_id)
    assert tab.unlabelled() == []
    tab.shot("player")
    streams = tab.console.audit_rows(action="recording:audio:stream", actor="consultant-1")
    assert streams and all(s["outcome"] == "allowed" for s in streams)
    assert any((s["detail"] or {}).get("via") == "stream-link" for s in streams)


def test_search_filters_by_number_agent_team_period_and_tier(tab):
    tab.sign_in("control-1")
    page = tab.page

    searched = []  # every search request the page sends: (method, url, body)
    page.on("request", lambda r: searched.append((r.method, r.url, r.post_data or ""))
            if "/recordings" in r.url and "/console/" not in r.url else None)
    is_search = lambda r: r.url.endswith("/recordings/search") and r.request.method == "POST"  # noqa: E731

    def search(**fields) -> set[str]:
        with page.expect_response(is_search):
            page.get_by_role("button", name="Clear").click()
        for label, value in fields.items():
            control = page.get_by_label(label, exact=True)
            if label == "Tier":
                control.select_option(value)
            else:
                control.fill(value)
        with page.expect_response(is_search):
            page.get_by_role("button", name="Search", exact=True).click()
        page.locator("#result-table").wait_for()
        return listed(tab)

    assert search(**{"Caller number": "06 12 34 56 78"}) == {"own", "restricted"}
    # The number goes in the POST body only: never in a request URL, the page URL or its history.
    assert any('"number":"06 12 34 56 78"' in body for _, _, body in searched)
    traces = ("number", "12 34", "12%2034", "12+34", "612345678")
    assert not [url for _, url, _ in searched if any(t in url for t in traces)], searched
    assert not any(t in page.url for t in traces)
    assert not any(t in str(page.evaluate("() => [history.state, location.href]")) for t in traces)
    assert search(Agent="a2") == {"teammate"}
    assert search(Team="t2") == {"elsewhere"}
    assert search(Tier="monitoring") == {"own"}
    since = page.evaluate("() => new Date(Date.now() - 2.5 * 3600e3).toISOString().slice(0, 16)")
    until = page.evaluate("() => new Date(Date.now() - 1.5 * 3600e3).toISOString().slice(0, 16)")
    assert search(**{"From (UTC)": since, "To (UTC)": until}) == {"teammate"}
    assert "agent=" not in page.url and "from=" in page.url  # the filters are in the URL, so Back works
    tab.shot("search-filtered")
    page.get_by_label("Caller number").fill("06 12 CALL")
    with page.expect_response(is_search) as refused:
        page.get_by_role("button", name="Search", exact=True).click()
    assert refused.value.status == 422
    page.locator("#status.error").wait_for()
    assert "Error 422" in page.locator("#status").inner_text() and page.locator("#result-table").count() == 0


def test_forbidden_actions_are_not_offered_and_are_refused_if_forced(tab):
    console = tab.console
    tab.sign_in("coach-1")
    open_recording(tab, "own")
    page = tab.page
    assert page.locator("#training").is_visible()  # what a coach may do
    for absent in ("#monitoring", "#extract", "#holds", "#break-glass"):
        assert page.locator(absent).count() == 0, absent
    assert page.get_by_role("button", name=re.compile("Download|Set hold|Release")).count() == 0
    assert {t for t in page.locator("#copies-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.tier)")} \
        == {"production", "training"}  # the monitoring copy is not even listed
    tab.shot("recording-coach")
    rid, production = console.recordings["own"], console.copies["own/production"]
    assert tab.fetch("POST", f"/recordings/{rid}/copies", {"tier": "monitoring"}) == 403
    assert tab.fetch("POST", f"/copies/{production}/hold", {"reason": "LIT-1"}) == 403
    assert tab.fetch("GET", f"/copies/{production}/export") == 403
    assert tab.fetch("POST", f"/copies/{console.copies['own/monitoring']}/stream-link") == 403
    assert tab.fetch("GET", "/audit") == 403
    assert tab.fetch("POST", "/subjects/erase", {"tenant": "acme", "numbers": [NUMBER]}) == 403
    denied = {(r["action"], r["actor"]) for r in console.audit_rows(outcome="denied")}
    assert {("copy:monitoring:create", "coach-1"), ("copy:hold:set", "coach-1"), ("audit:read", "coach-1"),
            ("recording:audio:stream", "coach-1"), ("subject:erase", "coach-1")} <= denied

    # A restricted recording: the metadata shows, the audio is not offered, and forcing it is refused.
    open_recording(tab, "restricted")
    assert page.get_by_role("button", name=re.compile("^Play")).count() == 0
    assert "only internal control" in page.locator("#no-play").inner_text()
    assert tab.fetch("POST", f"/copies/{console.copies['restricted/production']}/stream-link") == 403
    tab.shot("recording-restricted-coach")

    # A page the role may not use is not in its menu; opened by hand, the API refuses its data.
    tab.goto("/console/audit.html")
    page.locator("#status.error").wait_for()
    assert "Refused" in page.locator("#status").inner_text() or "403" in page.locator("#status").inner_text()
    assert page.locator("header nav").get_by_text("Audit trail").count() == 0


def test_a_coach_promotes_a_call_to_training_with_a_report(tab):
    tab.sign_in("coach-1")
    open_recording(tab, "teammate")
    page = tab.page
    assert page.locator("#copies-table tbody tr").count() == 1
    page.get_by_role("button", name="Promote to training").click()  # no report: the browser refuses the form
    assert page.locator("#training-report").evaluate("e => e.validity.valueMissing")
    page.get_by_label("Training report").fill("Calm handling of an angry caller; good recap at the end.")
    page.get_by_role("button", name="Promote to training").click()
    page.locator("#status.ok").wait_for()
    assert "Training copy created" in page.locator("#status").inner_text()
    page.locator("#copies-table tr[data-tier='training']").wait_for()
    tab.shot("recording-coach-promoted")
    training = [c for c in tab.console.copy_rows("teammate") if c["tier"] == "training"]
    assert len(training) == 1 and training[0]["training_report"].startswith("Calm handling")
    made = tab.console.audit_rows(action="copy:training:create")
    assert [(r["actor"], r["outcome"]) for r in made] == [("coach-1", "allowed")]
    # The new copy plays for the coach.
    page.get_by_role("button", name="Play the training copy").click()
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    assert 206 in audio_responses(tab, training[0]["id"])


def test_a_manager_makes_a_monitoring_copy(tab):
    tab.sign_in("manager-1")
    open_recording(tab, "teammate")
    page = tab.page
    assert page.locator("#training").count() == 0 and page.locator("#extract").count() == 0
    page.get_by_role("button", name="Create monitoring copy").click()
    page.locator("#copies-table tr[data-tier='monitoring']").wait_for()
    assert "Monitoring copy created" in page.locator("#status").inner_text()
    assert tab.unlabelled() == []
    tab.shot("recording-manager")


def test_it_sees_masked_numbers_and_plays_only_through_break_glass(tab):
    console = tab.console
    tab.sign_in("it-1")
    page = tab.page
    html = page.content()
    assert "612345678" not in html and "698765432" not in html
    callers = {" ".join(text.split()) for text in page.locator("#result-table td.caller").all_inner_texts()}
    assert callers == {"+33 6 •• •• •• 78 (masked)", "+33 6 •• •• •• 32 (masked)"}, callers
    open_recording(tab, "own")
    assert "612345678" not in page.content()
    assert "(masked)" in page.locator("#meta").inner_text()
    assert page.get_by_role("button", name=re.compile("^Play")).count() == 0
    assert "break-glass" in page.locator("#no-play").inner_text()
    production = console.copies["own/production"]
    assert tab.fetch("POST", f"/copies/{production}/stream-link") == 403  # forced, without a grant
    tab.shot("recording-it-before-break-glass")

    page.get_by_role("button", name="Open break-glass").click()  # no ticket: the browser refuses the form
    assert page.locator("#ticket").evaluate("e => e.validity.valueMissing")
    page.get_by_label("Ticket reference").fill("INC-4711")
    page.get_by_label(re.compile("^Minutes")).fill("10")
    page.get_by_role("button", name="Open break-glass").click()
    page.locator("#grant").wait_for()
    assert "INC-4711" in page.locator("#grant").inner_text()
    assert "production" in page.locator("#grant").inner_text()
    assert "monitoring" not in page.locator("#grant").inner_text()
    page.get_by_role("button", name="Play the production copy").click()
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    assert 206 in audio_responses(tab, production)
    tab.shot("recording-it-break-glass")
    streams = console.audit_rows(action="recording:audio:stream", actor="it-1", outcome="allowed")
    assert streams and all(s["reason"] == "INC-4711" and s["detail"]["ticket"] == "INC-4711" for s in streams)
    glass = console.audit_rows(action="recording:break-glass:open")
    assert [(g["actor"], g["outcome"], g["reason"]) for g in glass] == [("it-1", "allowed", "INC-4711")]
    # The grant covers this recording only, and of it the tiers ticked (production by default).
    assert tab.fetch("POST", f"/copies/{console.copies['teammate/production']}/stream-link") == 403
    assert tab.fetch("POST", f"/copies/{console.copies['own/monitoring']}/stream-link") == 403


def test_internal_control_extracts_holds_and_releases(tab):
    console = tab.console
    tab.sign_in("control-1")
    open_recording(tab, "own")
    page = tab.page
    assert page.locator("#training").count() == 0 and page.locator("#monitoring").count() == 0
    page.get_by_label("Complaint reference").fill("COMPLAINT-2026-17")
    page.get_by_role("button", name="Create extract").click()
    page.locator("#copies-table tr[data-tier='complaint-extract']").wait_for()
    assert page.locator("#copies-table tr[data-tier='complaint-extract']").get_by_text("COMPLAINT-2026-17").count() == 1

    page.get_by_label("Hold reason for the production copy").fill("LIT-7")
    page.locator("#copies-table tr[data-tier='production']").get_by_role("button", name="Set hold").click()
    page.get_by_role("button", name="Release the hold on the production copy").wait_for()
    assert "held: LIT-7" in page.locator("#copies-table tr[data-tier='production']").inner_text()

    page.get_by_label("Case reference").fill("LIT-8")
    page.get_by_role("button", name="Hold every copy").click()
    page.get_by_text("Legal hold set on 3 copies.").wait_for()  # the 4th, production, was held already
    assert all(c["hold"] for c in console.copy_rows("own"))
    assert "yes" in page.locator("#meta").inner_text()
    assert tab.unlabelled() == []
    tab.shot("recording-internal-control-held")
    page.get_by_label("Why the hold ends (optional)").fill("case closed")
    page.get_by_role("button", name="Release every hold").click()
    page.get_by_role("button", name="Hold every copy").wait_for()
    assert not any(c["hold"] for c in console.copy_rows("own"))
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the production copy").click()
    assert download.value.suggested_filename.endswith("-production.ogg")
    holds = [(r["action"], r["outcome"]) for r in console.audit_rows(actor="control-1")
             if r["action"].startswith("copy:")]
    assert ("copy:extract:create", "allowed") in holds and ("copy:hold:set", "allowed") in holds
    assert ("copy:hold:release", "allowed") in holds


def test_internal_control_runs_subject_requests_and_downloads_the_export(tab):
    tab.sign_in("control-1")
    page = tab.page
    page.get_by_role("link", name="Data-subject requests").click()
    page.get_by_label("Tenant").fill("acme")
    page.get_by_label("Phone numbers").fill("06 12 34 56 78")
    page.get_by_label("Restrict: only internal control may play").check()
    page.get_by_role("button", name="Run request").click()
    page.locator("#count").wait_for()
    assert page.locator("#count").inner_text() == "2 recording(s) restricted."
    page.get_by_label("Lift a restriction").check()
    page.get_by_role("button", name="Run request").click()
    page.get_by_text("no longer restricted").wait_for()

    page.get_by_label(re.compile("^Access / portability")).check()
    page.get_by_role("button", name="Run request").click()
    page.locator("#export-link").wait_for()
    assert tab.unlabelled() == []
    tab.shot("subjects-export")
    with page.expect_download() as download:
        page.locator("#export-link").click()
    import zipfile

    with zipfile.ZipFile(download.value.path()) as zf:
        assert "manifest.json" in zf.namelist() and len([n for n in zf.namelist() if n.startswith("audio/")]) == 2
    assert len(tab.console.audit_rows(action="subject:export:download", actor="control-1")) == 1

    # Erasure asks for a confirmation, then lists what was erased and what was kept.
    page.get_by_label("Phone numbers").fill("+33 6 98 76 54 32")
    page.get_by_label(re.compile("^Erase every recording")).check()
    page.get_by_role("button", name="Run request").click()
    assert page.locator("#confirm").evaluate("e => e.validity.valueMissing")
    page.get_by_label(re.compile("I confirm this deletes")).check()
    page.get_by_role("button", name="Run request").click()
    page.locator("#erased").wait_for()
    assert page.locator("#erased li").count() == 2
    tab.shot("subjects-erased")


def test_internal_control_reads_and_verifies_the_audit_trail(tab):
    tab.sign_in("control-1")
    page = tab.page
    page.get_by_role("link", name="Audit trail").click()
    page.locator("#audit-table tbody tr").first.wait_for()
    assert page.locator("#audit-table").get_by_text("recording:search").count() >= 1
    page.get_by_role("button", name="Verify the hash chain").click()
    page.locator("#verdict.ok").wait_for()
    assert page.locator("#verdict").inner_text().startswith("The chain is intact")
    assert tab.unlabelled() == []
    tab.shot("audit")


@pytest.mark.parametrize("user", ["control-1", "it-1"])
def test_the_lifecycle_report_chart(tab, user):
    tab.sign_in(user)
    page = tab.page
    page.get_by_role("link", name="Lifecycle report").click()
    page.locator("#report-chart").wait_for()
    assert page.locator("#report-chart rect").count() == 3 * 4  # acme: 3 tiers x 4 series
    rows = page.locator("#report-table tbody tr").all_inner_texts()
    assert any(r.startswith("acme\tproduction\t4") for r in rows), rows
    assert not any(r.startswith("other") for r in rows)
    tab.shot(f"report-{user}")


def test_keyboard_only_sign_in_search_open_and_play(tab):
    page = tab.page
    tab.goto("/console/")
    tab.shot("sign-in")
    assert page.evaluate("() => document.activeElement.id") == "token"
    page.keyboard.type(tab.console.token("consultant-1"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/search.html*")
    page.locator("#result-table").wait_for()

    def tab_to(predicate: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => {{ const e = document.activeElement; return {predicate}; }}"):
                return
        raise AssertionError(f"never reached by Tab: {predicate}")

    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    tab_to("e.matches('#result-table a')")
    page.keyboard.press("Enter")
    page.wait_for_url("**/recording.html?id=*")
    page.locator("#copies-table").wait_for()
    tab_to("e.matches('button.play')")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    tab_to("e.id === 'forward'")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('player').currentTime >= 10")
    tab.shot("keyboard-recording")


def test_signing_out_forgets_the_token_and_a_bad_token_is_refused(tab):
    page = tab.page
    tab.goto("/console/")
    page.get_by_label("Access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#status.error").wait_for()
    assert "invalid token" in page.locator("#status").inner_text()
    assert page.evaluate("() => sessionStorage.getItem('callvault.token')") is None
    tab.sign_in("consultant-1")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/")
    assert page.evaluate("() => sessionStorage.getItem('callvault.token')") is None
    tab.goto("/console/search.html")
    page.wait_for_url("**/console/?next=search.html")


def test_it_sees_the_dead_letters_page_without_numbers(tab):
    tab.sign_in("it-1")
    tab.page.get_by_role("link", name="Dead letters").click()
    tab.page.wait_for_function("() => document.getElementById('asof').textContent.startsWith('As of')")
    assert tab.page.locator("#dlq-table").count() + tab.page.get_by_text("No dead letters.").count() == 1
    assert tab.page.locator("#status").inner_text() == ""
    assert tab.unlabelled() == []
