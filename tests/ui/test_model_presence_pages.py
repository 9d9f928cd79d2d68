"""The models page and the playground mark the global models whose files are not on
this server, with the command that gets them; the playground starts each task on a
model that answers here when the task has one."""

import html
import re

from model_registry.catalogue import MODELS
from ui.playground import ModelChoice, default_choice, model_choices

from ..model_presence import hf_cache, put_in_cache  # noqa: F401 (hf_cache is a fixture)
from .test_playground_and_keys import shell_words

T5 = MODELS["t5-base-qa-summary-emotion"]


def model_select(page: str) -> str:
    return re.search(r'<select id="model".*?</select>', page, re.S)[0]


def presence_hint(page: str) -> tuple[bool, str]:
    """(whether the hint under the model select shows, the command in it)."""
    hint = re.search(r'<p class="help" id="model-presence"( hidden)?>(.*?)</p>', page, re.S)
    command = re.search(r'<code class="command" id="model-download">(.*?)</code>', hint[2], re.S)[1]
    return hint[1] is None, html.unescape(command)


def test_the_models_page_says_which_global_models_are_here(ui_for, hf_cache):
    page = ui_for("alice").get("/ui/models").get_data(as_text=True)
    rows = {re.search(r"<code>([^<]+)</code>", row)[1]: row
            for row in re.findall(r"<tr>.*?</tr>", page.split('id="global-models-table"')[1], re.S)[1:]}

    assert '<th scope="col">Files</th>' in page
    assert '<span class="status success">Present</span>' in rows["all-MiniLM-L6-v2"]
    assert '<span class="status success">Present</span>' in rows["smollm2-135m-instruct"]
    assert '<span class="status absent">Not here</span>' in rows["gpt2-large"]
    assert (f'<code class="command">hf download openai-community/gpt2-large --revision main --cache-dir {hf_cache}'
            '</code>') in rows["gpt2-large"]
    # Offline (as the tests run), an absent model answers 503 until its command has run.
    assert "answers 503 (the hub is offline here)" in page


def test_the_playground_starts_generation_on_the_model_that_is_here(ui_for, hf_cache):
    page = ui_for("alice").get("/ui/playground?task=text-generation").get_data(as_text=True)
    select = model_select(page)

    # Backprop's default stays first and says it is the default; the one that answers is chosen.
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]+)</option>', select)
    assert options == [("gpt2-large", "", "gpt2-large (default, files not here)"),
                       ("t5-base-qa-summary-emotion", "", "t5-base-qa-summary-emotion (files not here)"),
                       ("smollm2-135m-instruct", " selected", "smollm2-135m-instruct")]
    assert presence_hint(page) == (False, "")
    # The commands for the absent ones, for the script to show when one is chosen.
    assert html.unescape(re.search(r"data-downloads='([^']*)'", select)[1]) == (
        '{"gpt2-large":"hf download openai-community/gpt2-large --revision main --cache-dir %s",'
        '"t5-base-qa-summary-emotion":"hf download kiri-ai/t5-base-qa-summary-emotion --revision main '
        '--cache-dir %s"}' % (hf_cache, hf_cache))
    shown = html.unescape(re.search(r'<pre id="curl"[^>]*>(.*?)</pre>', page, re.S)[1])
    assert shell_words(shown)[-1] == '{"text": "", "model": "smollm2-135m-instruct"}'


def test_a_task_with_no_model_here_keeps_its_default_and_says_how_to_get_it(ui_for, hf_cache):
    page = ui_for("alice").get("/ui/playground?task=qa").get_data(as_text=True)

    assert re.search(r'<option value="english" selected>english: distilbert-base-cased-distilled-squad '
                     r'\(default, files not here\)</option>', page)
    assert presence_hint(page) == (
        True, f"hf download distilbert/distilbert-base-cased-distilled-squad --revision 564e9b5 --cache-dir {hf_cache}")
    assert re.search(r"the hub is offline here: it answers 503", page)


def test_a_model_whose_files_arrive_becomes_the_tasks_starting_model(ui_for, hf_cache):
    put_in_cache(hf_cache, T5.hf_id, T5.revision, "7" * 40, {"config.json": "{}"})

    page = ui_for("alice").get("/ui/playground?task=qa").get_data(as_text=True)

    assert '<option value="english">english: distilbert-base-cased-distilled-squad (default, files not here)' in page
    assert '<option value="t5-base-qa-summary-emotion" selected>t5-base-qa-summary-emotion</option>' in page
    assert presence_hint(page) == (False, "")


def test_a_model_asked_for_by_name_is_chosen_even_if_absent(ui_for, hf_cache):
    page = ui_for("alice").get("/ui/playground?task=text-generation&model=gpt2-large").get_data(as_text=True)

    assert '<option value="gpt2-large" selected>' in page
    assert presence_hint(page) == (
        True, f"hf download openai-community/gpt2-large --revision main --cache-dir {hf_cache}")


def test_an_own_built_model_comes_before_an_absent_default():
    listed = [{"id": "global_distilbert-base-cased-distilled-squad", "name": "distilbert-base-cased-distilled-squad",
               "available": False, "download": "hf download x"},
              {"id": "global_t5-base-qa-summary-emotion", "name": "t5-base-qa-summary-emotion",
               "available": False, "download": "hf download y"},
              {"id": "model_building", "name": "building", "tasks": ["qa"], "build_status": "building"},
              {"id": "model_mine", "name": "mine", "tasks": ["qa"], "build_status": "success"}]

    choices = model_choices("qa", listed)

    assert choices["Your models"] == [ModelChoice("building", "building (building)"), ModelChoice("mine", "mine")]
    assert default_choice(choices, listed) == "mine"
    # Nothing that answers: the task's default all the same.
    assert default_choice(model_choices("qa", listed[:3]), listed[:3]) == "english"


def test_online_the_pages_say_an_absent_model_is_downloaded_by_its_first_request(ui_for, hf_cache, monkeypatch):
    # Only the wording changes: the pages look at files, never at the hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    ui = ui_for("alice")

    models = ui.get("/ui/models").get_data(as_text=True)
    qa = ui.get("/ui/playground?task=qa").get_data(as_text=True)

    assert re.search(r"is downloaded\s+from the Hugging Face hub by its first request", models)
    assert re.search(r"the first request downloads them \(minutes for a large model\), or fetch them ahead with:", qa)
    assert presence_hint(qa)[0]
