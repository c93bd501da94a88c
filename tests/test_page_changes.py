"""A click on another page is not lost to a fragment rerun that arrives just after it
(views.common.keep_clicked_page: Streamlit's request folding, private API, version pinned)."""

from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests, ScriptRequestType

from views.common import keep_clicked_page


def pending_after(*requests: RerunData) -> RerunData:
    reqs = ScriptRequests()
    for r in requests:
        assert reqs.request_rerun(r)
    request = reqs.on_scriptrunner_yield() or reqs.on_scriptrunner_ready()
    assert request.type == ScriptRequestType.RERUN
    return request.rerun_data


def test_a_late_fragment_rerun_keeps_the_clicked_page():
    keep_clicked_page()
    click = RerunData(page_script_hash="training", page_name="training", query_string="")
    late_keys = RerunData(page_script_hash="text", page_name="text", fragment_id="typeahead")
    folded = pending_after(click, late_keys)
    assert folded.page_script_hash == "training"
    assert folded.page_name == "training"
    assert not folded.fragment_id_queue  # one full run of the clicked page


def test_a_click_after_a_fragment_rerun_still_changes_page():
    keep_clicked_page()
    keys = RerunData(page_script_hash="text", page_name="text", fragment_id="typeahead")
    click = RerunData(page_script_hash="training", page_name="training")
    assert pending_after(keys, click).page_script_hash == "training"


def test_two_fragment_reruns_stay_fragment_reruns():
    keep_clicked_page()
    a = RerunData(page_script_hash="text", fragment_id="a")
    b = RerunData(page_script_hash="text", fragment_id="b")
    folded = pending_after(a, b)
    assert folded.fragment_id_queue == ["a", "b"]
