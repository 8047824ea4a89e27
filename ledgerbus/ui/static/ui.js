// ledgerbus ui: live conversation list (server-sent events), one-click copy, the position slider.
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.copy");
    if (!b) return;
    var text = b.getAttribute("data-copy");
    var done = function () { b.textContent = "copied"; setTimeout(function () { b.textContent = "copy"; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, done);
    } else {
      var t = document.createElement("textarea");
      t.value = text; document.body.appendChild(t); t.select();
      try { document.execCommand("copy"); } catch (e) { /* nothing to do */ }
      t.remove(); done();
    }
  });

  var table = document.querySelector("table.convs[data-live]");
  if (table && window.EventSource) {
    var after = table.getAttribute("data-live");
    var query = table.getAttribute("data-query");
    var state = document.getElementById("live-state");
    var open = function () {
      var src = new EventSource("/live?after=" + encodeURIComponent(after) + (query ? "&" + query : ""));
      src.addEventListener("position", function (m) { after = m.data; });
      src.addEventListener("conversation", function (m) {
        var d = JSON.parse(m.data);
        var tpl = document.createElement("tbody");
        tpl.innerHTML = d.html;
        var fresh = tpl.firstElementChild;
        var body = document.getElementById("conv-rows");
        var old = body.querySelector('tr[data-id="' + CSS.escape(d.id) + '"]');
        if (old) { old.replaceWith(fresh); } else { body.insertBefore(fresh, body.firstChild); }
        fresh.classList.add("flash");
        var empty = document.getElementById("empty");
        if (empty) empty.remove();
      });
      src.onopen = function () { state.textContent = "live: new conversations appear here"; document.body.setAttribute("data-live", "open"); };
      src.onerror = function () { state.textContent = "reconnecting…"; };
    };
    open();
  }

  // The recorded plan's edges: one arrow per dependency, from the step's card to its dependent's, drawn
  // again when the layout changes (columns side by side on a wide window, stacked on a narrow one).
  var graph = document.querySelector(".graph.recorded");
  var draw = function () {
    var ns = "http://www.w3.org/2000/svg";
    var old = graph.querySelector("svg.edges");
    if (old) old.remove();
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "edges");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("width", graph.scrollWidth);
    svg.setAttribute("height", graph.scrollHeight);
    svg.innerHTML = '<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">' +
      '<path d="M0,0 L10,5 L0,10 z"></path></marker></defs>';
    var box = graph.getBoundingClientRect();
    var at = function (r) {
      return { l: r.left - box.left + graph.scrollLeft, r: r.right - box.left + graph.scrollLeft,
               t: r.top - box.top + graph.scrollTop, b: r.bottom - box.top + graph.scrollTop };
    };
    graph.querySelectorAll("article.task[data-deps]").forEach(function (card) {
      card.getAttribute("data-deps").split(" ").filter(Boolean).forEach(function (dep) {
        var from = graph.querySelector('article.task[data-task="' + CSS.escape(dep) + '"]');
        if (!from) return;
        var a = at(from.getBoundingClientRect()), b = at(card.getBoundingClientRect()), d;
        if (b.l >= a.r - 1) {  // side by side: right edge to left edge
          var y1 = (a.t + a.b) / 2, y2 = (b.t + b.b) / 2, mx = (a.r + b.l) / 2;
          d = "M" + a.r + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + (b.l - 1) + "," + y2;
        } else {  // stacked: out of the left edge and down the margin, past the cards in between, into the left edge
          var ya = (a.t + a.b) / 2, yb = (b.t + b.b) / 2, x = Math.min(a.l, b.l) - 14;
          d = "M" + a.l + "," + ya + " C" + x + "," + ya + " " + x + "," + yb + " " + (b.l - 1) + "," + yb;
        }
        var p = document.createElementNS(ns, "path");
        p.setAttribute("d", d);
        p.setAttribute("marker-end", "url(#head)");
        p.setAttribute("data-from", dep);
        p.setAttribute("data-to", card.getAttribute("data-task"));
        svg.appendChild(p);
      });
    });
    graph.insertBefore(svg, graph.firstChild);
  };
  if (graph) {
    draw();
    window.addEventListener("resize", draw);
    graph.addEventListener("toggle", draw, true);  // an opened <details> moves the cards below it
  }

  var slider = document.getElementById("slider");
  if (slider) {
    var positions = slider.getAttribute("data-positions").split(",");
    var out = document.getElementById("at-out");
    var pick = document.getElementById("at");
    slider.addEventListener("input", function () { out.textContent = positions[slider.value]; });
    slider.addEventListener("change", function () {
      var url = new URL(window.location.href);
      url.searchParams.set("at", positions[slider.value]);
      window.location.assign(url.toString());
    });
    pick.addEventListener("change", function () { pick.form.submit(); });
  }
})();
