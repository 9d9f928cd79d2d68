"""Datasets and training in a real browser: upload a dataset, see it parsed with its
label counts, start a training job from the dataset page's form, and watch the
job page's loss chart gain points as epochs finish, then its confusion matrix."""

import os
import re

from playwright.sync_api import expect

from .conftest import SLOW_MS

# A separable toy sentiment set: SetFit on the packaged all-MiniLM-L6-v2, the
# text-classification trainer's default base, learns it in a few short epochs.
POSITIVE = ["I love this", "what a great day", "wonderful film", "happy and joyful", "this is excellent",
            "brilliant work", "fantastic service", "superb meal"]
NEGATIVE = ["I hate this", "what an awful day", "terrible film", "sad and miserable", "this is horrible",
            "dreadful work", "awful service", "disgusting meal"]
# Few contrastive pairs per epoch, so that each epoch takes seconds, not minutes.
SETTINGS = {"epochs": "4", "num_iterations": "2"}


def reviews_csv() -> str:
    rows = [f'"{text}",positive' for text in POSITIVE] + [f'"{text}",negative' for text in NEGATIVE]
    return "text,label\n" + "\n".join(rows) + "\n"


def loss_points(page) -> int:
    return int(page.locator("#loss-chart").get_attribute("data-points") or 0)


def test_upload_a_dataset_train_on_it_and_watch_the_loss_chart_gain_points(signed_in, live, workdir):
    tab, page = signed_in, signed_in.page
    path = os.path.join(workdir, "reviews.csv")
    with open(path, "w") as out:
        out.write(reviews_csv())

    tab.menu("Datasets").click()
    expect(page).to_have_url(live.url + "/ui/datasets")
    page.get_by_label("Dataset file", exact=True).set_input_files(path)
    tab.shot("datasets")
    page.get_by_role("button", name="Upload dataset", exact=True).click()

    page.wait_for_url(live.url + "/ui/datasets/ds_*", timeout=60_000)
    expect(page.locator("#dataset-status")).to_have_text("ready", timeout=60_000)
    expect(page.locator("#parse-log")).not_to_be_empty()
    expect(page.locator("#label-chart")).to_be_visible()
    expect(page.locator("#label-chart canvas, #label-chart svg").first).to_be_visible()  # drawn by the script
    # The legend reads the totals until a bar is hovered, never uPlot's "--".
    expect(page.locator("#label-chart .u-legend")).to_contain_text("all 2")
    expect(page.locator("#label-chart .u-legend")).to_contain_text("16")
    expect(page.locator("#label-chart .u-legend")).not_to_contain_text("--")
    tab.shot("dataset")

    page.get_by_label("Trainer", exact=True).select_option("text-classification")
    page.get_by_label("Model name", exact=True).fill("sentiment")
    for name, value in SETTINGS.items():
        page.locator(f"#hp-text-classification-{name}").fill(value)
    page.get_by_role("button", name="Start training", exact=True).click()

    page.wait_for_url(live.url + "/ui/jobs/job_*", timeout=60_000)
    job_id = page.url.rsplit("/", 1)[1]
    at_first = loss_points(page)
    tab.shot("training-run-started")
    # No reload: job.js adds each epoch to the chart as the job reports it.
    chart = page.locator("#loss-chart")
    expect(chart).to_have_attribute("data-points", _at_least(1), timeout=SLOW_MS)
    expect(chart).to_have_attribute("data-points", _at_least(2), timeout=SLOW_MS)
    tab.shot("training-run-running")

    status = page.locator("#job-status")
    expect(status).to_have_text("succeeded", timeout=SLOW_MS)
    expect(chart).to_have_attribute("data-points", SETTINGS["epochs"], timeout=30_000)
    assert at_first < int(SETTINGS["epochs"])  # the chart gained its points while the page was open
    expect(page.locator("#metric-chart canvas").first).to_be_visible()
    expect(page.locator("#confusion-matrix")).to_be_visible()
    expect(page.locator("#confusion-matrix")).to_contain_text("positive")
    expect(page.locator("#charts-note")).to_have_text(f"{SETTINGS['epochs']} epochs (succeeded).")  # job.js's last poll came
    # "queued" went with the state it named (it lives in the page's live part, not in a flash).
    expect(page.locator("#job-queued")).to_have_count(0)
    expect(page.get_by_text("the job is queued")).to_have_count(0)
    # Accuracy and macro F1 are capped at 1: the axis is 0-1 (uPlot's own would be 0-2 for a flat line at 1).
    expect(page.locator("#metric-chart")).to_have_attribute("data-y-range", "0 1")
    loss_low, loss_high = map(float, chart.get_attribute("data-y-range").split())
    assert loss_low == 0 and 0 < loss_high < 2 * max_loss(job_of(live, tab, job_id)), (loss_low, loss_high)
    # The legends read values (the latest epoch's, until a point is hovered), never uPlot's "--".
    for legend in (page.locator("#loss-chart .u-legend"), page.locator("#metric-chart .u-legend")):
        expect(legend).to_contain_text(f"{SETTINGS['epochs']} (latest)")
        expect(legend).not_to_contain_text("--")
    expect(page.locator("#metric-chart .u-legend")).to_contain_text("accuracy")
    tab.shot("training-run")
    page.locator("#metric-chart .u-over").hover()  # a hovered epoch: its own values
    expect(page.locator("#metric-chart .u-legend")).not_to_contain_text("(latest)")
    expect(page.locator("#metric-chart .u-legend")).not_to_contain_text("--")
    tab.shot("training-run-hover")

    tab.menu("Training").click()
    expect(page.get_by_role("link", name=job_id, exact=True)).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=job_id)).to_contain_text("sentiment")
    tab.shot("jobs")


def job_of(live, tab, job_id: str) -> dict:
    answer = live.api().get(f"/jobs/{job_id}", headers={"x-api-key": tab.key})
    assert answer.status_code == 200, answer.json
    return answer.json


def max_loss(job: dict) -> float:
    return max(epoch[key] for epoch in job["epochs"] for key in ("train_loss", "validation_loss")
               if isinstance(epoch.get(key), (int, float)))


def _at_least(count: int):
    """A data-points value of `count` (1-9) or more, up to 99 epochs."""
    return re.compile(rf"^([{count}-9]|[1-9][0-9])$")
