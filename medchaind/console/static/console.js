// Live updates for the medchain console (progressive enhancement: every page works
// without this). Listens to /events (server-sent events) and, on the overview and the
// blocks list, adds a row for each new block. Builds DOM nodes with textContent only.
(function () {
  "use strict";
  if (!window.EventSource) { return; }
  var live = document.getElementById("live");
  var es = new EventSource("/events");
  es.onopen = function () { if (live) { live.classList.add("on"); } };
  es.onerror = function () { if (live) { live.classList.remove("on"); } };

  function cell(tr, text, href, code) {
    var td = document.createElement("td");
    var inner = td;
    if (href) { var a = document.createElement("a"); a.href = href; td.appendChild(a); inner = a; }
    if (code) { var c = document.createElement("code"); c.title = text; c.textContent = text.length > 15 ? text.slice(0, 10) + "\u2026" + text.slice(-4) : text; inner.appendChild(c); }
    else { inner.appendChild(document.createTextNode(text)); }
    tr.appendChild(td);
    return td;
  }
  function utc(ms) {
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  es.addEventListener("block", function (ev) {
    var b;
    try { b = JSON.parse(ev.data); } catch (e) { return; }
    var head = document.getElementById("head-height");
    if (head) { head.textContent = String(b.height); head.href = "/block/" + b.height; }
    var hash = document.getElementById("head-hash");
    if (hash) { hash.textContent = b.hash.slice(0, 10) + "\u2026" + b.hash.slice(-4); hash.title = b.hash; }
    var table = document.getElementById("recent-blocks");
    if (!table || document.body.dataset.page === "blocks" && location.search.indexOf("before=") >= 0) { return; }
    var body = table.tBodies[0];
    if (body.querySelector('tr[data-height="' + b.height + '"]')) { return; }
    var empty = body.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    var tr = document.createElement("tr");
    tr.dataset.height = String(b.height);
    tr.className = "new";
    cell(tr, String(b.height), "/block/" + b.height);
    cell(tr, utc(b.time_ms));
    var t = cell(tr, String(b.txs));
    if (b.failed) { var s = document.createElement("span"); s.className = "badge bad"; s.textContent = b.failed + " failed"; t.appendChild(document.createTextNode(" ")); t.appendChild(s); }
    var types = cell(tr, "");
    Object.keys(b.types).sort().forEach(function (k) {
      var tag = document.createElement("span"); tag.className = "tag"; tag.textContent = k + " \u00d7 " + b.types[k];
      types.appendChild(tag); types.appendChild(document.createTextNode(" "));
    });
    cell(tr, b.proposer, null, true);
    cell(tr, String(b.round));
    cell(tr, String(b.signers));
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 50) { body.deleteRow(body.rows.length - 1); }
  });
}());
