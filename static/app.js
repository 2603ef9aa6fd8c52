// EchoPilot dashboard: a little progressive JavaScript. Every page works without it.
(function () {
  "use strict";
  // Confirm dialogs on forms that ask for one.
  document.addEventListener("submit", function (e) {
    var f = e.target;
    var msg = f && f.getAttribute && f.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) {
      e.preventDefault();
    }
  });
  // Auto-refresh pages that ask for it, only while visible and not while typing.
  var el = document.querySelector("[data-refresh]");
  if (el) {
    var secs = parseInt(el.getAttribute("data-refresh"), 10) || 30;
    setInterval(function () {
      var a = document.activeElement;
      var typing = a && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
      if (!document.hidden && !typing) {
        window.location.reload();
      }
    }, secs * 1000);
  }
})();
