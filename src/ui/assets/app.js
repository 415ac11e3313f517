// llamactl's dashboard script: small, hand-written, loaded from this server only (the CSP allows
// no inline script). Pages work without it; it adds confirmations, live rows from the event
// stream (no polling), running clocks, the live log viewer and copy buttons.
(function () {
  "use strict";

  // Buttons that change things ask first.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // Spans since a moment ("3m 4s"), as the server writes them (rows.rs, `ago`), kept running by
  // the browser's clock: no request is made for them.
  function ago(secs) {
    var s = Math.max(0, Math.floor(secs));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = ago(now - Number(el.getAttribute("data-since"))) + (el.getAttribute("data-suffix") || "");
    });
  }
  setInterval(tick, 1000);

  // A session that ended sends every fetch to the sign-in page: go there.
  function signedOut(response) {
    if (response.redirected && new URL(response.url).pathname === "/sign-in") {
      window.location.assign("/sign-in");
      return true;
    }
    return false;
  }

  // Live rows: each event names an instance; its row is fetched anew and swapped in.
  var table = document.querySelector("[data-live-instances]");
  function refreshRow(name) {
    var id = "instance-" + name;
    fetch("/instances/" + encodeURIComponent(name) + "/row", { headers: { Accept: "text/html" } })
      .then(function (response) {
        if (signedOut(response)) return;
        var existing = document.getElementById(id);
        if (response.status === 404 || response.status === 403) {
          if (existing) existing.remove();
          return;
        }
        if (!response.ok) return;
        return response.text().then(function (html) {
          var template = document.createElement("template");
          template.innerHTML = html.trim();
          var row = template.content.firstElementChild;
          var current = document.getElementById(id);
          if (current) {
            current.replaceWith(row);
          } else {
            var body = table.querySelector("tbody");
            if (body) body.appendChild(row);
            var empty = document.getElementById("no-instances");
            if (empty) empty.remove();
          }
          tick();
        });
      })
      .catch(function () {});
  }
  if (table && window.EventSource) {
    var state = document.getElementById("live-state");
    var source = new EventSource("/ui/events");
    var onEvent = function (event) {
      try {
        var data = JSON.parse(event.data);
        if (data.instance) refreshRow(data.instance);
      } catch (e) {
        // An event that is not JSON changes no row.
      }
    };
    source.addEventListener("status", onEvent);
    source.addEventListener("history", onEvent);
    var refreshAll = function () {
      table.querySelectorAll("tbody tr").forEach(function (row) {
        refreshRow(row.id.replace(/^instance-/, ""));
      });
    };
    source.addEventListener("lagged", refreshAll);
    // What changed between the page's rendering and the stream's (re)connection was sent to no
    // one: catch up once connected.
    source.addEventListener("open", function () {
      if (state) state.textContent = "Live: updates arrive as they happen.";
      refreshAll();
    });
    source.addEventListener("error", function () {
      if (state) state.textContent = "Live updates interrupted; reconnecting…";
    });
  }

  // The live log: the server's follow stream read as it arrives. Follow keeps the end in view;
  // Pause holds new lines back (and says how many wait); Search shows only matching lines.
  var log = document.querySelector("[data-log]");
  if (log && window.fetch && window.TextDecoder) {
    var MAX_LINES = 5000;
    var lines = [];
    var held = [];
    var partial = "";
    var paused = false;
    var follow = document.getElementById("log-follow");
    var pause = document.getElementById("log-pause");
    var search = document.getElementById("log-search");
    var logState = document.getElementById("log-state");
    var render = function () {
      var needle = search ? search.value : "";
      var shown = needle ? lines.filter(function (l) { return l.indexOf(needle) !== -1; }) : lines;
      log.textContent = shown.join("\n");
      if (logState) {
        logState.textContent = (needle ? shown.length + " of " + lines.length + " lines match" : lines.length + " lines") +
          (paused ? " · paused, " + held.length + " new waiting" : "");
      }
      if (follow && follow.checked && !paused) log.scrollTop = log.scrollHeight;
    };
    var take = function (text) {
      var parts = (partial + text).split("\n");
      partial = parts.pop();
      (paused ? held : lines).push.apply(paused ? held : lines, parts);
      if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
      render();
    };
    if (pause) {
      pause.addEventListener("click", function () {
        paused = !paused;
        pause.textContent = paused ? "Resume" : "Pause";
        pause.setAttribute("aria-pressed", String(paused));
        if (!paused) {
          lines.push.apply(lines, held);
          held = [];
        }
        render();
      });
    }
    if (search) search.addEventListener("input", render);
    if (follow) follow.addEventListener("change", render);
    fetch(log.getAttribute("data-log"), { headers: { Accept: "text/plain" } })
      .then(function (response) {
        if (signedOut(response) || !response.ok || !response.body) return;
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var pump = function () {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              if (logState) logState.textContent += " · log ended";
              return;
            }
            take(decoder.decode(chunk.value, { stream: true }));
            return pump();
          });
        };
        return pump();
      })
      .catch(function () {
        if (logState) logState.textContent = "Log stream interrupted; reload to resume.";
      });
  }

  // The playground: the conversation posted as JSON (the session's CSRF token in a header), the
  // answer read as llama-server streams it (server-sent events of OpenAI chunks).
  var chat = document.querySelector("[data-chat]");
  if (chat && window.fetch && window.TextDecoder) {
    var conversation = [];
    var answer = document.getElementById("chat-answer");
    var chatState = document.getElementById("chat-state");
    var prompt = document.getElementById("chat-prompt");
    chat.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = prompt.value.trim();
      if (!text) return;
      conversation.push({ role: "user", content: text });
      var said = document.createElement("p");
      said.className = "said";
      said.textContent = text;
      var reply = document.createElement("p");
      reply.className = "reply";
      answer.appendChild(said);
      answer.appendChild(reply);
      prompt.value = "";
      chatState.textContent = "Waiting for the answer…";
      fetch(chat.getAttribute("data-chat"), {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": chat.getAttribute("data-csrf") },
        // A bounded answer: a small model left alone may talk until its context is full.
        body: JSON.stringify({ messages: conversation, stream: true, max_tokens: 256 })
      }).then(function (response) {
        if (signedOut(response)) return;
        if (!response.ok || !response.body) {
          return response.text().then(function (body) {
            var message = body;
            try { message = JSON.parse(body).error || body; } catch (e) { /* plain text */ }
            chatState.textContent = "Refused (" + response.status + "): " + message;
          });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var pending = "";
        var read = function () {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              conversation.push({ role: "assistant", content: reply.textContent });
              chatState.textContent = "Done.";
              return;
            }
            pending += decoder.decode(chunk.value, { stream: true });
            var events = pending.split("\n\n");
            pending = events.pop();
            events.forEach(function (event) {
              event.split("\n").forEach(function (line) {
                if (line.indexOf("data:") !== 0) return;
                var data = line.slice(5).trim();
                if (data === "[DONE]") return;
                try {
                  var delta = JSON.parse(data).choices[0].delta;
                  if (delta && delta.content) reply.textContent += delta.content;
                } catch (e) {
                  // A line that is not a chunk adds nothing.
                }
              });
            });
            return read();
          });
        };
        return read();
      }).catch(function () {
        chatState.textContent = "The answer was interrupted.";
      });
    });
  }

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(
      function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select and copy"; }
    );
  });
})();
