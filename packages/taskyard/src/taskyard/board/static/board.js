// The board's own script (the CSP allows no other): lease countdowns, and emptying the
// new-task form once htmx has created the task. Everything works without it.
(function () {
  "use strict";

  function countdown() {
    var now = Date.now();
    document.querySelectorAll("time.lease[datetime]").forEach(function (element) {
      var left = Math.round((Date.parse(element.getAttribute("datetime")) - now) / 1000);
      if (isNaN(left)) return;
      if (left <= 0) {
        element.textContent = "expired";
        element.classList.add("expired");
        return;
      }
      var minutes = Math.floor(left / 60);
      var seconds = String(left % 60).padStart(2, "0");
      element.textContent = minutes + ":" + seconds + " left";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    countdown();
    setInterval(countdown, 1000);
    document.body.addEventListener("htmx:afterSwap", countdown);
    // A card's button replaces the board, and the button with it (the card moved): focus
    // goes back to that card's title, so keyboard users keep their place.
    var cardOfRequest = null;
    document.body.addEventListener("htmx:beforeRequest", function (event) {
      var card = event.detail.elt.closest && event.detail.elt.closest("li.card");
      cardOfRequest = card ? card.getAttribute("data-task-id") : null;
    });
    document.body.addEventListener("htmx:afterSettle", function () {
      if (cardOfRequest === null) return;
      var focused = document.activeElement;
      if (!focused || focused === document.body) {
        var title = document.getElementById("open-" + cardOfRequest);
        if (title) title.focus();
      }
      cardOfRequest = null;
    });
    document.body.addEventListener("htmx:afterRequest", function (event) {
      var form = event.detail.elt;
      if (event.detail.successful && form.matches && form.matches("form[data-reset-on-success]")) {
        form.reset();
        var first = form.querySelector("input:not([type=hidden]), textarea, select");
        if (first) first.focus();
      }
    });
  });
})();
