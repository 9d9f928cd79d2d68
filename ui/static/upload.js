/* The Upload page: ask /ui/upload-url (the API's POST /upload-url, as the signed-in account)
   for an upload URL, PUT the zip to it from the browser with a progress bar, then go to the
   model page to follow the build. */
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) return;
  var nameInput = document.getElementById("model-name");
  var fileInput = document.getElementById("model-file");
  var button = document.getElementById("upload-button");
  var progress = document.getElementById("upload-progress");
  var message = document.getElementById("upload-message");
  var errorBox = document.getElementById("upload-error");
  var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
  var NAME = /^[a-z0-9_-]{3,100}$/;
  // A URL granted but not used (its PUT failed): a retry under the same name
  // reuses it rather than leaving one more version waiting for an upload.
  var granted = null;

  button.disabled = false;  // uploading works only with this script

  function say(text) { message.textContent = text; }

  function fail(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    progress.hidden = true;
    say("");
    setBusy(false);
  }

  function setBusy(busy) {
    button.disabled = busy;
    nameInput.disabled = busy;
    fileInput.disabled = busy;
  }

  function megabytes(bytes) {
    var units = [["GiB", 1073741824], ["MiB", 1048576], ["KiB", 1024]];
    for (var i = 0; i < units.length; i++) {
      if (bytes >= units[i][1]) return parseFloat((bytes / units[i][1]).toPrecision(3)) + " " + units[i][0];
    }
    return bytes + " bytes";
  }

  /* A readable reason from an answer that may be the API's JSON error or an HTML page. */
  function reason(status, body) {
    if (body && typeof body === "object" && body.message) return body.message;
    if (status === 401) return "Your session has ended: sign in again, then upload.";
    if (status === 403) return "Refused (HTTP 403): reload the page and try again.";
    if (status === 413) return "The zip is too large for the service (HTTP 413).";
    return "HTTP " + status;
  }

  function askForUrl(name) {
    if (granted && granted.model_name === name) return Promise.resolve(granted);
    say("Asking for an upload URL…");
    return window.infer.send(form.getAttribute("data-upload-url"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model_name: name })
    }).then(function (response) {
      var isJson = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      return (isJson ? response.json() : Promise.resolve(null)).then(function (body) {
        if (!response.ok) throw new Error("No upload URL for " + name + ": " + reason(response.status, body));
        granted = body;
        return body;
      });
    });
  }

  /* PUT the zip with XMLHttpRequest (fetch cannot report upload progress). The body is a
     Blob without a type, so no Content-Type is sent: as the API's clients do. */
  function put(file, target) {
    return new Promise(function (resolve, reject) {
      var request = new XMLHttpRequest();
      request.open("PUT", target.upload_url);
      request.upload.addEventListener("progress", function (event) {
        if (!event.lengthComputable) return;
        var percent = Math.floor(100 * event.loaded / event.total);
        progress.value = percent;
        progress.textContent = percent + "%";
        say("Uploading… " + percent + "% (" + megabytes(event.loaded) + " of " + megabytes(event.total) + ")");
      });
      request.addEventListener("load", function () {
        if (request.status >= 200 && request.status < 300) { resolve(); return; }
        var body = null;
        try { body = JSON.parse(request.responseText); } catch (ignored) { /* S3 answers XML */ }
        if (request.status === 403 || request.status === 409) granted = null;  // expired or used: ask again
        reject(new Error("The upload was refused: " + reason(request.status, body)));
      });
      request.addEventListener("error", function () {
        reject(new Error("The upload did not reach its URL (network error, or storage that refuses uploads " +
                         "from browsers: check the bucket's CORS rules). Try again."));
      });
      request.addEventListener("abort", function () { reject(new Error("The upload was stopped.")); });
      progress.value = 0;
      progress.hidden = false;
      request.send(file.slice(0, file.size));
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    var name = nameInput.value.trim();
    var file = fileInput.files && fileInput.files[0];
    if (!NAME.test(name)) {
      fail("The model name must be 3–100 characters: lowercase letters, digits, dashes (-) and underscores (_).");
      nameInput.focus();
      return;
    }
    if (!file) { fail("Choose the model's zip file."); fileInput.focus(); return; }
    if (!file.size) { fail(file.name + " is empty."); fileInput.focus(); return; }
    if (maxBytes && file.size > maxBytes) {
      fail(file.name + " is " + megabytes(file.size) + "; the largest upload is " + megabytes(maxBytes) + ".");
      fileInput.focus();
      return;
    }
    setBusy(true);
    askForUrl(name)
      .then(function (target) {
        return put(file, target).then(function () { return target; });
      })
      .then(function (target) {
        granted = null;
        progress.value = 100;
        say("Uploaded. Following the build…");
        window.location.assign(target.model_page);
      })
      .catch(function (error) { fail(error.message); });
  });
})();
