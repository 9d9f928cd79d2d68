/* The playground: builds the task's JSON body from its fields (each field says how with
   data-name and data-kind), runs it through /ui/playground/run as the signed-in account,
   shows the answer, and keeps the curl command for the same request up to date. */
(function () {
  "use strict";

  var form = document.getElementById("run-form");
  if (!form) return;
  var taskSelect = document.getElementById("task");
  var fieldsBox = document.getElementById("task-fields");
  var answer = document.getElementById("answer");
  var curl = document.getElementById("curl");
  var errorLine = document.getElementById("run-error");
  var statusLine = document.getElementById("run-status");
  var runButton = document.getElementById("run");

  // With the script, the fields follow the task select at once: no "Show its fields" step.
  document.getElementById("choose-task").remove();

  function showError(text) {
    errorLine.textContent = text || "";
    errorLine.hidden = !text;
  }

  function labelOf(input) {
    var label = document.querySelector('label[for="' + input.id + '"]');
    return label ? label.textContent.trim() : input.getAttribute("data-name");
  }

  function parseJSON(input) {
    try {
      return JSON.parse(input.value);
    } catch (error) {
      throw new Error(labelOf(input) + ": not valid JSON (" + error.message + ").");
    }
  }

  /* A file's bytes as plain base64 (what Backprop's client sends), without the data: prefix. */
  function base64Of(file) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result.slice(reader.result.indexOf(",") + 1)); };
      reader.onerror = function () { reject(new Error("Could not read " + file.name + ".")); };
      reader.readAsDataURL(file);
    });
  }

  /* {task, body, files}: the body the API takes; files names each image field's file, for curl.
     Without `withImages` (the curl preview) images stay "": the command reads the file itself. */
  function collect(withImages) {
    var body = {}, files = {}, reads = [];
    fieldsBox.querySelectorAll("[data-kind]").forEach(function (input) {
      var name = input.getAttribute("data-name"), value = input.value, blank = value.trim() === "";
      switch (input.getAttribute("data-kind")) {
        case "text":
          if (!blank || input.required) body[name] = value;
          break;
        case "lines":
          var lines = value.split("\n").map(function (line) { return line.trim(); }).filter(Boolean);
          if (lines.length) body[name] = lines;
          break;
        case "integer":
        case "number":
          if (!blank) body[name] = Number(value);
          break;
        case "boolean":
          if (value) body[name] = value === "true";
          break;
        case "image":
          var file = input.files && input.files[0];
          if (!file) break;
          files[name] = file.name;
          body[name] = "";
          if (withImages) reads.push(base64Of(file).then(function (data) { body[name] = data; }));
          break;
        case "json-object":
          if (blank) break;
          var fields = parseJSON(input);
          if (!fields || typeof fields !== "object" || Array.isArray(fields)) {
            throw new Error(labelOf(input) + ": send a JSON object, {\"name\": value, ...}.");
          }
          Object.assign(body, fields);
          break;
        default:  // json
          if (!blank) body[name] = parseJSON(input);
      }
    });
    var model = document.getElementById("model");
    if (model && model.value) body.model = model.value;
    return Promise.all(reads).then(function () { return { task: taskSelect.value, body: body, files: files }; });
  }

  function postJSON(url, data) {
    return window.infer.send(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data)
    });
  }

  /* The playground route's JSON, or an Error saying why there is none. */
  function resultOf(response) {
    if (response.status === 401) {  // the session ended (its key was revoked): sign in again
      window.location.reload();
      return new Promise(function () {});
    }
    return response.json().then(function (result) {
      if (!response.ok) throw new Error(result.message || "HTTP " + response.status);
      return result;
    }, function () {
      throw new Error(response.status === 403 ? "This page is out of date: reload it and run again."
        : response.status === 413 ? "The request is too large (an image of a few MB at most)."
          : "HTTP " + response.status);
    });
  }

  /* JSON with lists of numbers (vectors) on one line each, not one number a line. */
  function pretty(value) {
    return JSON.stringify(value, null, 2).replace(/\[[\d\s.,eE+-]+\]/g, function (numbers) {
      return numbers.replace(/\s+/g, " ").replace("[ ", "[").replace(" ]", "]");
    });
  }

  var previewTimer = null;
  function previewCurl() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(function () {
      Promise.resolve().then(function () { return collect(false); })
        .then(function (request) { return postJSON(form.getAttribute("data-curl-url"), request); })
        .then(resultOf)
        .then(function (result) { curl.textContent = result.curl; })
        .catch(function () { /* a field is not valid JSON yet: keep the last command */ });
    }, 300);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    showError("");
    runButton.disabled = true;
    statusLine.textContent = "Running…";
    var started = Date.now();
    Promise.resolve().then(function () { return collect(true); })
      .then(function (request) { return postJSON(form.getAttribute("data-run-url"), request); })
      .then(resultOf)
      .then(function (result) {
        answer.textContent = result.answer === null ? "(the answer is not JSON)" : pretty(result.answer);
        curl.textContent = result.curl;
        statusLine.textContent = "HTTP " + result.status + " after " + (Date.now() - started) + " ms.";
        if (!result.ok) showError(result.message);
      })
      .catch(function (error) {
        statusLine.textContent = "";
        showError(error.message);
      })
      .then(function () { runButton.disabled = false; });
  });

  /* The hint under the model select: shown, with the command that gets the files, when the chosen
     built-in model's files are not on the server (the select's data-downloads names those models). */
  function showPresence() {
    var model = document.getElementById("model");
    var hint = document.getElementById("model-presence");
    var command = document.getElementById("model-download");
    if (!model || !hint || !command) return;
    var downloads = JSON.parse(model.getAttribute("data-downloads") || "{}");
    var download = Object.prototype.hasOwnProperty.call(downloads, model.value) ? downloads[model.value] : "";
    command.textContent = download;
    hint.hidden = !download;
  }

  form.addEventListener("input", previewCurl);
  form.addEventListener("change", previewCurl);
  form.addEventListener("change", function (event) {
    if (event.target && event.target.id === "model") showPresence();
  });

  taskSelect.addEventListener("change", function () {
    var task = taskSelect.value;
    var url = form.getAttribute("data-fields-url") + "?task=" + encodeURIComponent(task);
    window.infer.send(url, { headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        if (!response.ok) throw new Error("Could not load the fields of " + task + " (HTTP " + response.status + ").");
        return response.text();
      })
      .then(function (html) {
        if (html === null || taskSelect.value !== task) return;  // another task was chosen meanwhile
        var page = new DOMParser().parseFromString(html, "text/html");
        fieldsBox.innerHTML = page.getElementById("task-fields").innerHTML;
        showPresence();
        answer.textContent = "Run the request to see the answer here.";
        statusLine.textContent = "";
        showError("");
        window.history.replaceState(null, "", "?task=" + encodeURIComponent(task));
        previewCurl();
      })
      .catch(function (error) { showError(error.message); });
  });

  // The page arrives with its curl command rendered: no request until a field changes.
})();
