// Follows a playbook run's output on its page (no inline script: CSP script-src 'self').
// #run-output's data-live names the Server-Sent Events stream (/runs/ID/live?from=N,
// N = the bytes the page already shows): "output" events append text, "state" events
// update the state, "done" reloads the page to show the result. If the stream breaks,
// the page reloads itself after 3 s (a reload resumes from what the server stored).
// Without JavaScript the page reloads every 3 seconds (<noscript> refresh).
"use strict";
(function () {
  var box = document.getElementById("run-output");
  if (!box || !box.dataset.live || !window.EventSource) {
    return;
  }
  var stateBox = document.getElementById("run-state");
  var message = document.getElementById("run-message");
  function label(state) {
    var item = document.querySelector('#state-labels li[data-state="' + state + '"]');
    return item ? item.textContent : state;
  }
  var source = new EventSource(box.dataset.live);
  source.addEventListener("output", function (event) {
    var atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.textContent += JSON.parse(event.data);
    if (atEnd) {
      box.scrollTop = box.scrollHeight;
    }
  });
  source.addEventListener("state", function (event) {
    var update = JSON.parse(event.data);
    if (stateBox) {
      var shown = document.createElement("span");
      shown.className = "state state-" + update.state;
      shown.textContent = label(update.state);
      stateBox.replaceChildren(shown);
    }
    if (message) {
      message.textContent = update.message || "\u2014";
    }
  });
  source.addEventListener("done", function () {
    source.close();
    window.location.reload();
  });
  source.onerror = function () {
    source.close();
    window.setTimeout(function () {
      window.location.reload();
    }, 3000);
  };
})();
