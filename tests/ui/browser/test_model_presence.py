"""Global models' presence in a real browser: the playground's hint under the model
select follows the chosen model, showing the command that gets an absent model's
files; the models page marks them at desktop and phone width."""

import re

from playwright.sync_api import expect

from .conftest import PHONE


def test_the_model_hint_follows_the_chosen_model(signed_in):
    tab, page = signed_in, signed_in.page
    tab.menu("Playground").click()
    model, hint = page.get_by_label("Model", exact=True), page.locator("#model-presence")

    page.get_by_label("Task", exact=True).select_option("text-generation")
    page.wait_for_url(re.compile(r"/ui/playground\?task=text-generation$"))
    # The model whose files are here is chosen, not Backprop's default (listed first all the same).
    expect(model).to_have_value("smollm2-135m-instruct")
    expect(hint).to_be_hidden()

    model.select_option("gpt2-large")
    expect(hint).to_be_visible()
    expect(page.locator("#model-download")).to_have_text(
        re.compile(r"^hf download openai-community/gpt2-large --revision main( --cache-dir \S+)?$"))
    expect(page.locator("#curl")).to_contain_text('"model": "gpt2-large"')
    tab.shot("playground-absent-model")

    model.select_option("smollm2-135m-instruct")
    expect(hint).to_be_hidden()

    # A task with no model here: its default, and the hint, as the page arrives from the task switch.
    page.get_by_label("Task", exact=True).select_option("qa")
    page.wait_for_url(re.compile(r"/ui/playground\?task=qa$"))
    expect(model).to_have_value("english")
    expect(hint).to_be_visible()
    expect(page.locator("#model-download")).to_contain_text(
        "hf download distilbert/distilbert-base-cased-distilled-squad --revision 564e9b5")


def test_the_models_page_marks_absent_models_at_desktop_and_phone_width(open_tab, live):
    key = live.key("model-presence-pages")
    for width, viewport in (("desktop", None), ("phone", PHONE)):
        tab = open_tab(viewport)
        tab.sign_in(key)
        table = tab.page.locator("#global-models-table")
        row = table.locator("tr", has=tab.page.locator("code", has_text=re.compile(r"^gpt2-large$")))
        expect(row.locator(".status")).to_have_text("Not here")
        expect(row.locator("code.command")).to_contain_text("hf download openai-community/gpt2-large --revision main")
        minilm = table.locator("tr", has=tab.page.locator("code", has_text=re.compile(r"^all-MiniLM-L6-v2$")))
        expect(minilm.locator(".status")).to_have_text("Present")
        tab.shot(f"models-presence-{width}")
