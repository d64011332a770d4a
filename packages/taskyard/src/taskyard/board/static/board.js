// The board's own script (the CSP allows no other): lease countdowns, focus after a card's
// button, emptying the new-task form once htmx created the task, and saying so when an htmx
// request fails. Everything works without it.
(function () {
  "use strict";

  // How far this browser's clock is from the server's, measured when a board render arrives
  // (each render carries the server's time; a 204 from the poller changes nothing).
  var skew = 0;
  var measured = null;
  function measureSkew() {
    var board = document.getElementById("board");
    var stamp = board && board.getAttribute("data-server-now");
    if (!stamp || stamp === measured) return;
    measured = stamp;
    var serverNow = Date.parse(stamp);
    if (!isNaN(serverNow)) skew = serverNow - Date.now();
  }

  function countdown() {
    var now = Date.now() + skew;
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
    measureSkew();
    countdown();
    setInterval(countdown, 1000);
    document.body.addEventListener("htmx:afterSwap", function () {
      measureSkew();
      countdown();
    });
    // htmx does not swap error answers in: say so, rather than nothing happening.
    var requestError = document.getElementById("request-error");
    document.body.addEventListener("htmx:responseError", function (event) {
      var status = event.detail.xhr.status;
      var message = status === 403
        ? "This page is out of date. Reload it and try again."
        : status === 404
          ? "Not found: it may have been deleted, or you are no longer a member."
          : "The board could not do that (" + status + "). Reload the page and try again.";
      requestError.textContent = message;
      requestError.hidden = false;
    });
    document.body.addEventListener("htmx:sendError", function () {
      requestError.textContent = "The server cannot be reached; the board will retry.";
      requestError.hidden = false;
    });
    document.body.addEventListener("htmx:afterRequest", function (event) {
      if (event.detail.successful) requestError.hidden = true;
    });
    // A card's button replaces the board, and the button with it (the card moved): focus
    // goes back to that card's title, so keyboard users keep their place.
    document.body.addEventListener("htmx:afterSettle", function (event) {
      var config = event.detail.requestConfig;
      var source = config && config.elt;
      // The source is detached by now; closest() still walks its old ancestors.
      var card = source && source.closest && source.closest("li.card");
      if (!card) return;
      var focused = document.activeElement;
      if (!focused || focused === document.body) {
        var title = document.getElementById("open-" + card.getAttribute("data-task-id"));
        if (title) title.focus();
      }
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
