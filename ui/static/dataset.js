/* The Datasets pages: the upload through an upload URL (any size, with progress), the
   label counts bar chart, the training form's per-trainer settings, and a reload once
   the dataset is parsed (its statistics and training form then appear). */
(function () {
  "use strict";

  /* Upload: ask the UI for a dataset waiting for its file and an upload URL, PUT the file
     there (this service, or the S3 bucket), then go to the dataset page. */
  function setUpUpload(form) {
    var file = document.getElementById("dataset-file");
    var progress = document.getElementById("dataset-progress");
    var message = document.getElementById("dataset-upload-message");
    var button = form.querySelector("button[type=submit]");

    function fail(text) {
      message.textContent = text;
      message.classList.add("error");
      button.disabled = false;
      progress.hidden = true;
    }

    function put(upload) {
      var request = new XMLHttpRequest();
      request.open("PUT", upload.upload_url);
      request.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) progress.value = Math.round(100 * event.loaded / event.total);
      });
      request.addEventListener("load", function () {
        if (request.status >= 200 && request.status < 300) { window.location.assign(upload.page_url); return; }
        var answer = {};
        try { answer = JSON.parse(request.responseText); } catch (ignored) { /* S3 answers XML */ }
        fail("The upload was refused (HTTP " + request.status + "): " + (answer.message || request.statusText));
      });
      request.addEventListener("error", function () { fail("The upload failed: the connection was lost."); });
      request.send(file.files[0]);
    }

    form.addEventListener("submit", function (event) {
      if (!file.files.length) return;  // the browser says the file is required
      event.preventDefault();
      button.disabled = true;
      message.classList.remove("error");
      message.textContent = "Uploading " + file.files[0].name + "…";
      progress.hidden = false;
      progress.value = 0;
      var fields = { filename: file.files[0].name };
      ["name", "format", "label_column", "text_column"].forEach(function (name) {
        fields[name] = form.elements[name].value;
      });
      window.infer.send(form.getAttribute("data-upload-url"), {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(fields)
      }).then(function (response) {
        return response.json().then(function (answer) {
          if (!response.ok) throw new Error(answer.message || "HTTP " + response.status);
          put(answer);
        });
      }).catch(function (error) { fail("Could not upload the dataset: " + error.message); });
    });
  }

  /* Only the chosen trainer's settings are shown and sent. */
  function setUpTrainerChoice(select) {
    function show() {
      document.querySelectorAll("fieldset[data-trainer]").forEach(function (fieldset) {
        var chosen = fieldset.getAttribute("data-trainer") === select.value;
        fieldset.hidden = !chosen;
        fieldset.disabled = !chosen;
      });
    }
    select.addEventListener("change", show);
    show();
  }

  function drawLabelCounts(element) {
    var counts = window.infer.pageData("label-counts") || {};
    var labels = Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a] || (a < b ? -1 : 1); });
    window.inferCharts.barChart(element, labels, labels.map(function (label) { return counts[label]; }),
                                { xLabel: "label", yLabel: "rows" });
  }

  var form = document.getElementById("dataset-upload");
  if (form && window.fetch && window.XMLHttpRequest) setUpUpload(form);
  var trainer = document.getElementById("trainer");
  if (trainer) setUpTrainerChoice(trainer);
  var chart = document.getElementById("label-chart");
  if (chart && window.inferCharts && window.uPlot) drawLabelCounts(chart);
  var parse = document.querySelector("[data-reload-when-final]");
  if (parse) {
    parse.addEventListener("refreshed", function () {
      if (parse.querySelector("[data-final]")) window.location.reload();
    });
  }
})();
