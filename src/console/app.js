// sluice console: the only script (no inline script; the Content-Security-Policy
// allows none). Refreshes the overview without a full reload, and asks before a
// destructive action. Holds no secret: the session cookie is HttpOnly.
"use strict";

(function () {
  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401 || r.redirected) {
          window.location.href = "/console/signin";
          return null;
        }
        return r.ok ? r.json() : null;
      })
      .then(function (j) {
        if (j && typeof j.html === "string") {
          el.innerHTML = j.html;
          el.setAttribute("data-refreshed", j.generated_at || "");
        }
      })
      .catch(function () { /* the next poll tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var el = document.getElementById("overview");
    if (el) {
      window.setInterval(function () { refresh(el); }, 5000);
    }
    var confirmForm = document.getElementById("confirm-form");
    if (confirmForm && confirmForm.action.indexOf("discard") >= 0) {
      confirmForm.addEventListener("submit", function (e) {
        if (!window.confirm("Discard these DLQ entries for good?")) {
          e.preventDefault();
        }
      });
    }
  });
})();
