// Starts asciinema-player on the terminal page (no inline script: CSP script-src 'self').
// The page's #player names its source: data-live (Server-Sent Events of a live
// session, read-only) or data-cast (the recording). Once the player runs, the plain
// text view is hidden; without JavaScript the text view is what the page shows.
"use strict";
(function () {
  var box = document.getElementById("player");
  if (!box || !window.AsciinemaPlayer) {
    return;
  }
  var source = box.dataset.live
    ? { driver: "eventsource", url: box.dataset.live, bufferTime: 0 }
    : box.dataset.cast;
  window.AsciinemaPlayer.create(source, box, {
    fit: "width",
    autoPlay: Boolean(box.dataset.live),
    idleTimeLimit: 2,
    terminalFontFamily: "monospace",
  });
  box.hidden = false;
  var text = document.getElementById("text-view");
  if (text) {
    text.hidden = true;
  }
})();
