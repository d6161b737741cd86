/*
 * The read token the dashboard pages send (Authorization: Bearer), shared by the
 * placement dashboard and the flows explorer: one token serves both in a tab. Kept in
 * sessionStorage; where that is unavailable (privacy settings), until the page reloads.
 * Also the token form both pages carry (#token-form, #token-label, #token-input): shown
 * after a 401/403, and what the answer interrupted runs again once a token is given.
 */
(function () {
  "use strict";
  var KEY = "flowmesh.apiToken";
  var inMemory = null;
  var resume = null;

  function $(id) {
    return document.getElementById(id);
  }

  function stored() {
    try {
      return window.sessionStorage.getItem(KEY);
    } catch (e) {
      return inMemory;
    }
  }

  function store(token) {
    inMemory = token;
    try {
      if (token === null) window.sessionStorage.removeItem(KEY);
      else window.sessionStorage.setItem(KEY, token);
    } catch (e) {
      /* kept in memory only */
    }
  }

  /** 401: no token or an unknown one (forgotten); 403: a token without the read scope. `what` answered it; `then` runs once a token is given. */
  function ask(httpStatus, what, then) {
    var had = stored() !== null;
    if (httpStatus === 401) store(null);
    resume = then;
    $("token-label").textContent =
      httpStatus === 403
        ? "This token lacks the read scope; enter one that has it:"
        : had
          ? "The gateway did not accept this token; enter another with the read scope:"
          : "This gateway needs an API token with the read scope:";
    $("token-form").hidden = false;
    var status = $("status");
    status.dataset.state = "auth";
    status.textContent = "Waiting for an API token (" + what + " answered " + httpStatus + ")";
    $("token-input").focus();
  }

  /** Request headers with the token, if one is stored. */
  function headers(accept) {
    var out = { accept: accept };
    var token = stored();
    if (token) out.authorization = "Bearer " + token;
    return out;
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var token = $("token-input").value.trim();
      if (!token) return;
      store(token);
      $("token-input").value = "";
      $("token-form").hidden = true;
      var then = resume;
      resume = null;
      if (then) then();
    });
  });

  window.flowmeshToken = { stored: stored, store: store, ask: ask, headers: headers };
})();
