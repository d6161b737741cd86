/*
 * The read token the dashboard pages send (Authorization: Bearer), shared by the
 * placement dashboard and the flows explorer: one token serves both in a tab. Kept in
 * sessionStorage; where that is unavailable (privacy settings), until the page reloads.
 */
(function () {
  "use strict";
  var KEY = "flowmesh.apiToken";
  var inMemory = null;
  window.flowmeshToken = {
    stored: function () {
      try {
        return window.sessionStorage.getItem(KEY);
      } catch (e) {
        return inMemory;
      }
    },
    store: function (token) {
      inMemory = token;
      try {
        if (token === null) window.sessionStorage.removeItem(KEY);
        else window.sessionStorage.setItem(KEY, token);
      } catch (e) {
        /* kept in memory only */
      }
    },
  };
})();
