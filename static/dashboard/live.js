// QuickPe dashboard, live: one WebSocket to the user's event stream (signed in by the session
// cookie), applied to the page; resumes from the last event id after a drop. Everything here
// is an enhancement: every form and page works without it.
(function () {
  "use strict";
  var body = document.body;
  var url = body.dataset.websocketUrl;
  var lastId = parseInt(body.dataset.lastEventId || "0", 10);
  var indicator = document.querySelector('[data-testid="connection-state"]');
  var retry = 1000;
  var inr = new Intl.NumberFormat("en-IN", { style: "currency", currency: "INR" });

  function money(text) { return inr.format(Number(text)); }
  function state(name, words) {
    if (!indicator) return;
    indicator.dataset.state = name;
    indicator.textContent = words;
  }
  function escapeText(text) {
    var span = document.createElement("span");
    span.textContent = text == null ? "" : String(text);
    return span.innerHTML;
  }

  // Re-render parts of this page from the server (ids of the regions to replace).
  function refresh(ids) {
    var present = ids.filter(function (id) { return document.getElementById(id); });
    if (!present.length) return;
    fetch(location.href, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (!html) return;
      var fresh = new DOMParser().parseFromString(html, "text/html");
      present.forEach(function (id) {
        var next = fresh.getElementById(id);
        if (next) document.getElementById(id).replaceWith(next);
      });
    });
  }

  // A live line must read exactly as the server renders it (_activity_item.html): Django's
  // label of the kind ("transfer_in" -> "Transfer In") and the time as "j M, H:i" in the
  // page's time zone.
  var months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
    "Dec"];
  var clock = new Intl.DateTimeFormat("en-GB", {
    timeZone: body.dataset.timeZone || "UTC", day: "numeric", month: "numeric",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23"
  });
  function kindLabel(kind) {
    return kind.split("_").map(function (word) {
      return word.charAt(0).toUpperCase() + word.slice(1);
    }).join(" ");
  }
  function when(timestamp) {
    var parts = {};
    clock.formatToParts(new Date(timestamp)).forEach(function (part) {
      parts[part.type] = part.value;
    });
    return parseInt(parts.day, 10) + " " + months[parseInt(parts.month, 10) - 1] + ", " +
      parts.hour + ":" + parts.minute;
  }

  function activityItem(line) {
    var item = document.createElement("li");
    item.className = "line " + line.direction;
    item.setAttribute("data-testid", "activity-item");
    var kind = kindLabel(line.kind);
    var who = line.counterparty ? line.counterparty.name : kind;
    var sign = line.direction === "credit" ? "+" : "-";
    item.innerHTML = '<span class="what"><strong>' + escapeText(who) + "</strong><small>" +
      escapeText(kind) + " · " + escapeText(line.reference) + ' · <time datetime="' +
      escapeText(line.created_at) + '">' + escapeText(when(line.created_at)) + "</time>" +
      (line.description ? " · " + escapeText(line.description) : "") + "</small></span>" +
      '<span class="amount">' + sign + escapeText(money(line.amount)) + "</span>";
    return item;
  }

  var handlers = {
    "balance:update": function (data) {
      var balance = document.querySelector('[data-testid="balance"]');
      if (balance) balance.textContent = money(data.balance);
    },
    "transaction:new": function (data) {
      var list = document.querySelector('[data-testid="activity"]');
      if (!list || location.pathname !== "/app/") return;
      var empty = list.querySelector(".empty");
      if (empty) empty.remove();
      list.insertBefore(activityItem(data.transaction), list.firstChild);
    },
    "notification:new": function (data) {
      var badge = document.querySelector('[data-testid="unread-badge"]');
      if (!badge) return;
      badge.textContent = String(data.unread_count);
      badge.hidden = data.unread_count === 0;
      badge.parentElement.setAttribute("aria-label", "Notifications, " + data.unread_count + " unread");
      refresh(["notifications"]);
    },
    "money_request:update": function () { refresh(["incoming", "outgoing", "pending"]); },
    "export:update": function (data) {
      var item = document.querySelector('[data-export-id="' + data.export.id + '"]');
      if (!item || data.export.status === "done" || data.export.status === "failed") {
        refresh(["exports"]);
        return;
      }
      item.dataset.status = data.export.status;
      var bar = item.querySelector("progress");
      if (bar) { bar.value = data.export.progress; bar.textContent = data.export.progress + "%"; }
      var words = item.querySelector(".export-status");
      if (words) words.textContent = data.export.status + " · " + data.export.progress + "%";
    }
  };

  // A socket can die without a close (a laptop asleep, a changed network), and then nothing
  // tells this page that events are waiting. So after a quiet spell, and whenever the page is
  // shown again, it asks to resume from its last id: the answer (`resumed`, after any missed
  // events) proves the socket alive; no frame at all within ANSWER means it is dead, and it is
  // replaced by a new one, which replays what was missed. Probes are spaced, so the server's
  // message rate (a replay costs 5 of its 10) is never reached.
  var QUIET = 30000, ANSWER = 5000, PROBE_SPACING = 10000;
  var socket = null, lastFrameAt = Date.now(), probedAt = 0, unanswered = null;

  function probe() {
    var now = Date.now();
    if (!socket || socket.readyState !== WebSocket.OPEN || unanswered) return;
    if (now - probedAt < PROBE_SPACING) return;
    probedAt = now;
    socket.send(JSON.stringify({ type: "resume", last_event_id: lastId }));
    unanswered = setTimeout(replace, ANSWER);
  }
  function replace() {
    unanswered = null;
    var dead = socket;
    // Its close handshake may never finish: forget it now rather than wait for onclose.
    dead.onmessage = dead.onclose = null;
    dead.close();
    connect();
  }
  setInterval(function () {
    if (Date.now() - lastFrameAt > QUIET) probe();
  }, 5000);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") probe();
  });

  function connect() {
    state("connecting", "Connecting…");
    socket = new WebSocket(url + "?last_event_id=" + lastId);
    lastFrameAt = Date.now();
    socket.onmessage = function (message) {
      lastFrameAt = Date.now();
      clearTimeout(unanswered);
      unanswered = null;
      var frame = JSON.parse(message.data);
      if (frame.type === "hello" || frame.type === "resumed") {
        retry = 1000;
        state("live", "Live");
        return;
      }
      if (frame.type === "resync_required") { location.reload(); return; }
      if (typeof frame.id !== "number" || frame.id <= lastId) return;
      lastId = frame.id;
      var handle = handlers[frame.type];
      if (handle) handle(frame.data);
    };
    socket.onclose = function (event) {
      clearTimeout(unanswered);
      unanswered = null;
      if (event.code === 4401) { state("offline", "Signed out"); return; }
      state("offline", "Offline, reconnecting…");
      // Jittered, so the tabs of many users dropped together do not reconnect in step.
      setTimeout(connect, retry * (0.75 + Math.random() / 2));
      retry = Math.min(retry * 2, 15000);
    };
  }

  // A money form is sent once: the second click of a double click does nothing (the server's
  // idempotency key would also make it a replay). Delegated, so forms that arrive with a live
  // refresh (Pay on the requests page) are covered too.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-once]")) return;
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "1";
    var button = form.querySelector('button[type="submit"]');
    if (button) button.setAttribute("aria-busy", "true");
  });

  // Recipient suggestions as you type (names, QuickPe IDs; emails only when typed in full).
  var recipient = document.getElementById("send-recipient");
  var people = document.getElementById("people");
  if (recipient && people) {
    var timer;
    recipient.addEventListener("input", function () {
      clearTimeout(timer);
      var query = recipient.value.trim();
      if (query.length < 2) return;
      timer = setTimeout(function () {
        fetch("/app/people?q=" + encodeURIComponent(query), { credentials: "same-origin" })
          .then(function (response) { return response.ok ? response.json() : []; })
          .then(function (found) {
            people.innerHTML = "";
            found.forEach(function (person) {
              var option = document.createElement("option");
              option.value = person.quickpe_id;
              option.label = person.name + " (" + person.email + ")";
              people.appendChild(option);
            });
          });
      }, 200);
    });
  }

  if (url && window.WebSocket) connect();
})();
