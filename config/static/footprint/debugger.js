/* A source's live debugger: polls the source's debugger endpoint (JSON, under the admin) every
   two seconds and shows its latest requests without reloading the page. A click on a request
   shows what it carried. */
(function () {
  "use strict";

  const POLL_MS = 2000;

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function when(iso) {
    const at = new Date(iso);
    const seconds = Math.max(0, Math.round((Date.now() - at.getTime()) / 1000));
    const ago = seconds < 60 ? seconds + " s ago" : seconds < 3600 ? Math.round(seconds / 60) + " min ago"
      : seconds < 86400 ? Math.round(seconds / 3600) + " h ago" : Math.round(seconds / 86400) + " days ago";
    const clock = seconds < 86400
      ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" })
      : at.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    return clock + " (" + ago + ")";
  }

  function refusals(td, request) {
    if (request.error) {
      td.textContent = "The whole request failed: " + request.error;
      td.classList.add("fp-down");
      return;
    }
    if (request.status === "Pending") { td.textContent = "Waiting to be processed"; return; }
    if (!request.rejected_count) { td.textContent = "—"; return; }
    const list = document.createElement("ul");
    request.rejected.forEach(function (item) {
      const li = document.createElement("li");
      li.className = "fp-down";
      li.textContent = item.reason + (item.field ? " (" + item.field + ")" : "");
      list.appendChild(li);
    });
    if (request.rejected_count > request.rejected.length) {
      const li = document.createElement("li");
      li.textContent = "and " + (request.rejected_count - request.rejected.length) + " more";
      list.appendChild(li);
    }
    td.appendChild(list);
  }

  function start(root) {
    const url = root.dataset.url;
    const state = document.getElementById("fp-debugger-state");
    const empty = document.getElementById("fp-debugger-empty");
    const table = document.getElementById("fp-debugger-table");
    const body = table.querySelector("tbody");
    const payload = document.getElementById("fp-debugger-payload");
    const payloadTitle = document.getElementById("fp-debugger-payload-title");
    const payloadBody = document.getElementById("fp-debugger-payload-body");
    let seenBefore = null;

    function show(id) {
      fetch(url + id + "/", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
        payload.hidden = false;
        payloadTitle.textContent = "Request #" + id;
        if (data.payload !== null && data.payload !== undefined) {
          payloadBody.textContent = JSON.stringify(data.payload, null, 2);
        } else if (data.refused && data.refused.length) {
          payloadBody.textContent = "The request's body is no longer kept. Its refused messages:\n\n"
            + JSON.stringify(data.refused, null, 2);
        } else {
          payloadBody.textContent = "This request's body is no longer kept: it arrived while the debugger was closed, "
            + "or more than an hour ago. Its stored events are on the Events page.";
        }
      });
    }

    function render(data) {
      const requests = data.requests;
      empty.hidden = requests.length > 0;
      table.hidden = requests.length === 0;
      if (!requests.length) {
        state.className = "fp-banner fp-banner-warn";
        state.textContent = "No requests yet. Waiting for the first one…";
      } else {
        const last = requests[0];
        const fresh = Date.now() - new Date(last.received_at).getTime() < 3600 * 1000;
        state.className = "fp-banner " + (fresh ? "fp-banner-good" : "fp-banner-warn");
        state.textContent = "Last request received " + when(last.received_at) + ". Watching for more…";
      }
      const ids = requests.map(function (r) { return r.id; });
      body.textContent = "";
      requests.forEach(function (request) {
        const row = document.createElement("tr");
        row.className = "fp-request";
        row.dataset.id = request.id;
        if (seenBefore !== null && seenBefore.indexOf(request.id) === -1) row.classList.add("fp-new");
        cell(row, when(request.received_at), "fp-num");
        cell(row, request.door);
        const pending = request.status === "Pending";
        cell(row, request.messages === null ? (pending ? "…" : "—") : String(request.messages), "fp-num");
        cell(row, request.accepted === null ? (pending ? "…" : "—") : String(request.accepted), "fp-num");
        refusals(cell(row, ""), request);
        const link = document.createElement("a");
        link.href = "#fp-debugger-payload";
        link.textContent = "Show";
        link.addEventListener("click", function (event) { event.preventDefault(); show(request.id); });
        row.appendChild(document.createElement("td")).appendChild(link);
        body.appendChild(row);
      });
      seenBefore = ids;
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(render)
        .catch(function (error) {
          state.className = "fp-banner fp-banner-bad";
          state.textContent = "The debugger cannot reach the server (" + error.message + "); retrying.";
        })
        .finally(function () { setTimeout(poll, POLL_MS); });
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("fp-debugger");
    if (root) start(root);
  });
})();
