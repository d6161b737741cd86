/*
 * The read token the dashboard pages send (Authorization: Bearer), shared by the
 * placement dashboard and the flows explorer: one token serves both in a tab. Kept in
 * sessionStorage; where that is unavailable (privacy settings), until the page reloads.
 * Also the token form (#token-form, #token-label, #token-input), made here after the
 * page's #status line: shown after a 401/403, and what the answer interrupted runs again
 * once a token is given.
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
    var tokenForm = form();
    $("token-label").textContent =
      httpStatus === 403
        ? "This token lacks the read scope; enter one that has it:"
        : had
          ? "The gateway did not accept this token; enter another with the read scope:"
          : "This gateway needs an API token with the read scope:";
    tokenForm.hidden = false;
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

  /** The form, hidden: a label, a password field, a button and a hint, after #status. */
  function makeForm() {
    var el = document.createElement("form");
    el.id = "token-form";
    el.hidden = true;
    el.setAttribute("autocomplete", "off");
    var label = document.createElement("label");
    label.id = "token-label";
    label.htmlFor = "token-input";
    label.append("This gateway needs an API token with the ");
    var scope = document.createElement("code");
    scope.textContent = "read";
    label.append(scope, " scope:");
    var input = document.createElement("input");
    input.id = "token-input";
    input.name = "token";
    input.type = "password";
    input.required = true;
    input.spellcheck = false;
    input.placeholder = "token";
    var button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Use token";
    var hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = "kept in this tab only (sessionStorage)";
    el.append(label, " ", input, " ", button, " ", hint);
    el.addEventListener("submit", function (event) {
      event.preventDefault();
      var token = input.value.trim();
      if (!token) return;
      store(token);
      input.value = "";
      el.hidden = true;
      var then = resume;
      resume = null;
      if (then) then();
    });
    $("status").after(el);
    return el;
  }

  function form() {
    return $("token-form") || makeForm();
  }

  // Made as soon as the page is parsed (or by the first ask, whichever comes first).
  document.addEventListener("DOMContentLoaded", form);

  window.flowmeshToken = { stored: stored, store: store, ask: ask, headers: headers };
})();
