// Refreshes the tables of /hub/tfspawner from /hub/api/tfspawner/gpus, the data
// the page was rendered from. Every value goes in with textContent: names come
// from users and containers.
(function () {
  "use strict";
  var root = document.getElementById("tfspawner-admin");
  if (!root || !window.fetch) {
    return;
  }
  var EVERY_MS = 5000;
  var api = root.dataset.api;
  var removeUrl = root.dataset.remove;
  var mayRemove = root.dataset.mayRemove === "yes";

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, attrs[key]);
    });
    return node;
  }

  function row(cells, attrs) {
    var tr = el("tr", null, attrs);
    cells.forEach(function (cell) {
      tr.appendChild(cell instanceof Node ? cell : el("td", cell));
    });
    return tr;
  }

  function fill(table, rows, empty) {
    var body = table.tBodies[0];
    if (!rows.length && empty) {
      var td = el("td", empty, { colspan: String(table.tHead.rows[0].cells.length) });
      rows = [row([td])];
    }
    body.replaceChildren.apply(body, rows);
  }

  function code(text) {
    var td = el("td", null, { class: "text-break" });
    td.appendChild(el("code", text));
    return td;
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // An ISO time, or a Unix timestamp in seconds (the boot queue's).
  function since(when, now) {
    if (when === undefined || when === null || when === "") {
      return "";
    }
    var t = new Date(typeof when === "number" ? when * 1000 : when);
    var minutes = Math.max(0, Math.floor((now - t) / 60000));
    return t.toISOString().slice(0, 16).replace("T", " ") + " UTC (" + minutes + " min)";
  }

  function duration(seconds) {
    if (seconds === undefined || seconds === null) {
      return "";
    }
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) {
      return seconds + " s";
    }
    return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  }

  function server(name) {
    return name || "(default)";
  }

  function gpus(view, now) {
    var table = document.getElementById("tfspawner-gpus");
    var nodes = view.gpus.some(function (gpu) {
      return "node" in gpu;
    });
    var heads = ["GPU", "Model", "Status", "User", "Server", "Profile", "Since"];
    if (nodes) {
      heads.unshift("Node");
    }
    table.tHead.replaceChildren(
      row(
        heads.map(function (h) {
          return el("th", h, { scope: "col" });
        }),
      ),
    );
    var rows = view.gpus.map(function (gpu) {
      var held = gpu.held_by;
      var status = el("td", "free", { class: "free" });
      var cells = ["", "", "", ""];
      if (held) {
        var text = "held";
        if (held.known_to_hub === false) {
          text = "held, not known to the hub";
          if (held.hub && held.hub !== view.hub_name) {
            text += " (hub " + held.hub + ")";
          }
        }
        status = el("td", text, { class: "held" });
        cells = [
          held.user || held.container || "",
          server(held.server),
          held.profile || "",
          since(held.since, now),
        ];
      }
      var model = ((gpu.name || "") + " " + (gpu.memory || "")).trim();
      var all = [gpu.id, model, status].concat(cells);
      if (nodes) {
        all.unshift(gpu.node || "");
      }
      return row(all, { id: "gpu-" + gpu.id });
    });
    fill(table, rows, "This hub has no GPUs.");
    document.getElementById("summary").textContent =
      view.free + " of " + view.total + " GPUs free.";
  }

  function queue(view, now) {
    var q = view.boot_queue;
    var summary = document.getElementById("tfspawner-queue-summary");
    var table = document.getElementById("tfspawner-queue");
    if (!q) {
      summary.textContent =
        "No boot queue on this hub: servers boot as soon as they are asked for.";
      table.hidden = true;
      return;
    }
    var booting = q.booting || [];
    var waiting = q.waiting || [];
    var slots = q.slots === undefined ? "?" : q.slots;
    var length = q.length === undefined ? waiting.length : q.length;
    var median =
      q.median_boot_s === undefined || q.median_boot_s === null
        ? "not known yet"
        : duration(q.median_boot_s);
    summary.textContent =
      length + " waiting; " + booting.length + " of " + slots +
      " boot slots in use; median boot time " + median + ".";
    var rows = booting
      .map(function (e) {
        return row(["booting", e.label || "", since(e.since, now), duration(e.elapsed_s), ""]);
      })
      .concat(
        waiting.map(function (e) {
          return row([
            e.place === undefined ? "" : e.place,
            e.label || "",
            since(e.since, now),
            duration(e.waited_s),
            duration(e.estimate_s),
          ]);
        }),
      );
    fill(table, rows);
    table.hidden = !rows.length;
  }

  function unknown(view, now) {
    var rows = (view.not_known_to_hub || []).map(function (s) {
      var link = el("a", "Remove…", {
        class: "btn btn-sm btn-outline-danger",
        href: removeUrl + "?" + new URLSearchParams({ user: s.user, server: s.server }),
      });
      var action = el("td");
      if (mayRemove) {
        action.appendChild(link);
      }
      return row([
        s.user,
        server(s.server),
        (s.gpus || []).join(", ") || "none",
        s.profile || "-",
        s.container || "",
        since(s.since, now),
        action,
      ]);
    });
    fill(
      document.getElementById("not-known-to-hub"),
      rows,
      "None: the hub knows every running server.",
    );
  }

  function images(view, now) {
    var info = view.images || {};
    var text;
    if (!info.catalogue_file) {
      text = "No image catalogue file: the pins come from TFSpawner.images.";
    } else if (info.last_rebuilt) {
      text =
        "The image catalogue was last rebuilt " +
        info.last_rebuilt.slice(0, 16).replace("T", " ") + " UTC.";
    } else {
      text = "The image catalogue has no rebuilt images yet.";
    }
    if (info.error) {
      text += " " + info.error;
    }
    document.getElementById("tfspawner-catalogue").textContent = text;
    fill(
      document.getElementById("tfspawner-images"),
      (info.aliases || []).map(function (i) {
        return row(
          [
            i.alias,
            code(i.repository),
            code(i.digest),
            i.built ? since(i.built, now) : "in TFSpawner.images",
            i.stale,
          ],
          { id: "image-" + i.alias },
        );
      }),
    );
    var stale = document.getElementById("stale-images");
    var rows = (view.stale_images || []).map(function (s) {
      return row([
        s.user,
        server(s.server),
        s.alias,
        code(s.image),
        code(s.current),
        since(s.since, now),
      ]);
    });
    fill(stale, rows);
    stale.hidden = !rows.length;
  }

  function render(view) {
    var now = view.generated ? new Date(view.generated) : new Date();
    gpus(view, now);
    queue(view, now);
    unknown(view, now);
    images(view, now);
    document.getElementById("tfspawner-updated").textContent =
      pad(now.getUTCHours()) + ":" + pad(now.getUTCMinutes()) + ":" +
      pad(now.getUTCSeconds()) + " UTC";
    document.getElementById("tfspawner-stale").hidden = true;
  }

  function failed(why) {
    var note = document.getElementById("tfspawner-stale");
    note.textContent = "Could not refresh (" + why + "); showing older data.";
    note.hidden = false;
  }

  function refresh() {
    var headers = {};
    if (window.jhdata && window.jhdata.xsrf_token) {
      headers["X-XSRFToken"] = window.jhdata.xsrf_token;
    }
    fetch(api, { credentials: "same-origin", headers: headers })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(render)
      .catch(function (e) {
        failed(e.message);
      })
      .finally(function () {
        window.setTimeout(refresh, EVERY_MS);
      });
  }

  document.getElementById("tfspawner-refresh").hidden = false;
  window.setTimeout(refresh, EVERY_MS);
})();
