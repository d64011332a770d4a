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
