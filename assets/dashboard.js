// The dashboard's live updates (Server-Sent Events); every page works without this file.
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
})();
