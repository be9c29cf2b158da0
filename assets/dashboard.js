// The dashboard's live updates (Server-Sent Events) and the CSV upload's progress; every page
// works without this file.
"use strict";
(function () {
  // The live calls' table body: each "calls" event carries the rows, rendered by the server.
  var rows = document.getElementById("live-calls");
  if (rows && rows.dataset.events) {
    var calls = new EventSource(rows.dataset.events);
    calls.addEventListener("calls", function (event) {
      rows.innerHTML = event.data;
    });
  }
  // A live call's transcript: each "line" event is one more line; "ended" reloads the page,
  // which then shows the summary, the analysis and the recording.
  var transcript = document.getElementById("transcript");
  if (transcript && transcript.dataset.events) {
    var lines = new EventSource(transcript.dataset.events);
    lines.addEventListener("line", function (event) {
      transcript.insertAdjacentHTML("beforeend", event.data);
    });
    lines.addEventListener("ended", function () {
      lines.close();
      window.location.reload();
    });
  }
  // A CSV upload: the same form sent by XMLHttpRequest, so that a <progress> follows the
  // upload; the answer (the import's page) then replaces this page's content. Without this
  // script the form posts and the browser shows that page itself.
  var upload = document.querySelector("form[data-progress]");
  if (upload && window.FormData && window.DOMParser) {
    upload.addEventListener("submit", function (event) {
      event.preventDefault();
      var bar = document.getElementById(upload.dataset.progress);
      var status = document.getElementById(upload.dataset.progress + "-status");
      var button = upload.querySelector("button[type=submit]");
      var request = new XMLHttpRequest();
      request.open("POST", upload.action);
      request.upload.addEventListener("progress", function (progress) {
        if (progress.lengthComputable) {
          bar.value = Math.round((100 * progress.loaded) / progress.total);
          bar.textContent = bar.value + " %";
          status.textContent = "Uploading: " + bar.value + " %";
        }
      });
      request.upload.addEventListener("load", function () {
        status.textContent = "Uploaded; importing…";
      });
      request.addEventListener("load", function () {
        var page = new DOMParser().parseFromString(request.responseText, "text/html");
        var main = page.querySelector("main");
        if (!main) {
          status.textContent = "The gateway answered " + request.status + ".";
          button.disabled = false;
          return;
        }
        document.title = page.title;
        document.querySelector("main").replaceWith(main);
      });
      request.addEventListener("error", function () {
        status.textContent = "The upload failed; check the connection and try again.";
        button.disabled = false;
      });
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      request.send(new FormData(upload));
    });
  }
})();
