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
