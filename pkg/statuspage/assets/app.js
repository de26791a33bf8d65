// callstream status page: renders /status.json snapshots, live over
// server-sent events (/status/events). No library, no external resource.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  let snap = null, scrolled = false;

  // el builds an element: el("td", {class: "n", "data-k": "x"}, "text", child...).
  function el(tag, attrs, ...kids) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
    for (const c of kids) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const int = n => Math.round(n).toLocaleString("en-US");
  const rate = r => r === null || r === undefined ? "–" : r.toFixed(1);
  const secs = s => s === null || s === undefined ? "–" : s < 120 ? s.toFixed(1) + " s" : s < 7200 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";
  const clock = ms => new Date(ms).toLocaleTimeString("en-GB", {hour12: false});
  const ago = ms => secs(Math.max(0, (Date.now() - ms) / 1000)) + " ago";
  const pill = (cls, text, k) => el("span", {class: "pill " + cls, "data-k": k}, text || cls.replace("_", " "));
  function table(head, rows) {
    return el("table", {}, el("thead", {}, el("tr", {}, ...head.map(h => el("th", {class: h.startsWith("#") ? "n" : null}, h.replace(/^#/, ""))))),
      el("tbody", {}, ...rows));
  }
  const num = (k, text) => el("td", {class: "n", "data-k": k}, text);
  function fill(id, show, ...content) {
    const s = document.getElementById(id);
    s.hidden = !show;
    if (show) s.querySelector(".body").replaceChildren(...content);
  }
  const note = text => el("p", {class: "mute"}, text);

  function stages(s) {
    const name = st => st.stage === "handled" ? "handled by " + st.plugin : st.stage === "read" ? "records read" : "events published";
    const key = st => "stage:" + st.stage + (st.plugin ? ":" + st.plugin : "");
    return table(["stage", "#events/s", "#total"], s.stages.map(st =>
      el("tr", {}, el("td", {}, name(st)), num(key(st) + ":rate", rate(st.rate)), num(key(st) + ":total", int(st.total)))));
  }

  function orgs(s) {
    if (!s.orgs.length) return note("No organization polled yet.");
    return table(["org", "#window lag", "last poll", "state", "#completed", "#missed", "#failed"], s.orgs.map(o => el("tr", {},
      el("td", {}, o.org),
      num("org:" + o.org + ":lag", secs(o.window_lag_seconds)),
      el("td", {"data-k": "org:" + o.org + ":poll"}, o.last_poll_outcome ? o.last_poll_outcome + ", " + ago(o.last_poll_at_ms) : "–"),
      el("td", {}, o.paused ? pill("paused", "paused: " + (o.pause_reason || "unknown"), "org:" + o.org + ":state") : pill("ok", "polling", "org:" + o.org + ":state")),
      ...["completed", "missed", "failed"].map(st => num("org:" + o.org + ":" + st, int((o.calls || {})[st] || 0))))));
  }

  function alertItem(a) {
    const thr = a.threshold === null ? "" : " (threshold " + (+a.threshold.toPrecision(3)) + ")";
    const when = a.state === "resolved" ? "resolved " + clock(a.ends_at_ms) + ", fired " + clock(a.starts_at_ms) : "since " + clock(a.starts_at_ms);
    return el("li", {id: "alert-" + a.alert_id, class: "alert " + a.state, "data-k": "alert:" + a.alert_id},
      el("a", {href: "#alert-" + a.alert_id}, pill(a.state, null, "alert:" + a.alert_id + ":state"), " ", el("b", {}, a.rule), " ", a.org),
      " value ", el("b", {"data-k": "alert:" + a.alert_id + ":value"}, +a.value.toPrecision(3)), thr,
      el("div", {class: "meta"}, (a.group ? a.group + " · " : "") + when + " · " + a.alert_id));
  }

  function alerts(s) {
    const a = s.alerts, sum = m => Object.values(m || {}).reduce((x, y) => x + y, 0);
    const firing = sum(a.firing_by_rule), pending = sum(a.pending_by_rule);
    const byRule = Object.entries(a.firing_by_rule || {}).filter(([, n]) => n > 0).map(([r, n]) => r + ": " + n).join(", ");
    const out = [el("p", {}, el("span", {class: "big", "data-k": "alerts:firing"}, int(firing)), " firing now",
      byRule ? " (" + byRule + ")" : "", " · ", el("span", {"data-k": "alerts:pending"}, int(pending)), " pending")];
    if (a.firing.length) out.push(el("ul", {class: "alerts", id: "alerts-firing"}, ...a.firing.map(alertItem)));
    if (a.resolved.length) out.push(el("h3", {}, "Resolved in the last hour"), el("ul", {class: "alerts", id: "alerts-resolved"}, ...a.resolved.map(alertItem)));
    // Without any alert in the last hour the per-alert series are absent,
    // as they are from an alerting that does not export them.
    if (!a.detailed && firing > 0) out.push(note("Values and links of single alerts need callstream_alerting_alert_value, which this process does not export (yet)."));
    else if (!a.firing.length && !a.resolved.length) out.push(note(a.detailed ? "No alert fired in the last hour." : "No alert firing."));
    return out;
  }

  function chart(s) {
    const c = s.chart;
    if (!c.orgs.length) return [note("No calls published yet.")];
    // Bars fill [L, L+W) of the view box; the y labels sit left of them.
    const L = 44, W = 600, H = 100, n = Math.round(c.span_seconds / c.step_seconds), bw = W / n;
    const from = c.end_ms - c.span_seconds * 1000;
    return c.orgs.map(o => {
      const max = Math.max(1, ...o.buckets.map(b => b.reduce((x, y) => x + y, 0)));
      const svg = el("svg:svg", {viewBox: "0 0 " + (L + W) + " " + (H + 14), role: "img",
        "aria-label": "calls of " + o.org + " by status per minute"});
      svg.append(el("svg:line", {class: "axis", x1: L, y1: H, x2: L + W, y2: H}),
        el("svg:text", {x: L - 4, y: 9, "text-anchor": "end"}, int(max)), el("svg:text", {x: L - 4, y: H, "text-anchor": "end"}, "0"),
        el("svg:text", {x: L, y: H + 12}, "-" + Math.round(c.span_seconds / 60) + " min"),
        el("svg:text", {x: L + W, y: H + 12, "text-anchor": "end"}, "now"));
      o.buckets.forEach((b, i) => {
        const x = L + (o.starts_ms[i] - from) / (c.step_seconds * 1000) * bw;
        if (x < L) return;
        let y = H;
        const title = clock(o.starts_ms[i]) + ": " + c.statuses.map((st, j) => st + " " + int(b[j])).join(", ");
        b.forEach((v, j) => {
          const h = v / max * H;
          if (h <= 0) return;
          y -= h;
          const cls = ["completed", "missed", "failed"].includes(c.statuses[j]) ? c.statuses[j] : "other";
          svg.append(el("svg:rect", {class: cls, x: x.toFixed(1), y: y.toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: h.toFixed(1)}, el("svg:title", {}, title)));
        });
      });
      return el("div", {class: "org-chart"}, el("h3", {}, o.org),
        el("div", {class: "legend"}, ...c.statuses.map(st => el("span", {},
          el("i", {class: ["completed", "missed", "failed"].includes(st) ? st : "other"}), st + " ",
          el("b", {"data-k": "chart:" + o.org + ":" + st}, int(o.totals[st] || 0))))), svg);
    });
  }

  function webhooks(s) {
    if (!s.webhooks.length) return note("No endpoint configured.");
    return table(["endpoint", "state", "#queued", "#delivered", "#to DLQ", "#deliveries/s"], s.webhooks.map(w => el("tr", {},
      el("td", {}, w.endpoint), el("td", {}, pill(w.state, null, "wh:" + w.endpoint + ":state")),
      num("wh:" + w.endpoint + ":queued", int(w.queued)), num("wh:" + w.endpoint + ":delivered", int(w.delivered)),
      num("wh:" + w.endpoint + ":dlq", int(w.dlq)), num("wh:" + w.endpoint + ":rate", rate(w.rate)))));
  }

  function dlq(s) {
    return [el("p", {}, el("span", {class: "big", "data-k": "dlq:total"}, int(s.dlq.total)), " messages sent to the DLQ by this process"),
      s.dlq.parts.length ? table(["from", "#messages"], s.dlq.parts.map(p => el("tr", {}, el("td", {}, p.source), num("dlq:" + p.source, int(p.count))))) : null];
  }

  function lag(s) {
    if (!s.consumer_lag.length) return note(s.plugins.length ? "Not measured: lag is sampled on Kafka (callstream consume), not on the in-process bus." : "No plug-in in this process.");
    return table(["plug-in", "#events behind"], s.consumer_lag.map(l => el("tr", {}, el("td", {}, l.plugin), num("lag:" + l.plugin, int(l.lag)))));
  }

  function freshness(s) {
    if (!s.freshness.length) return note("Not reported: this build does not export callstream_event_freshness_seconds.");
    const name = l => Object.entries(l).filter(([, v]) => v !== "").map(([k, v]) => k + "=" + v).join(" ") || "all";
    return table(["series", "#p50", "#p99", "#events (5 min)"], s.freshness.map(f => el("tr", {}, el("td", {}, name(f.labels)),
      num("fresh:" + name(f.labels) + ":p50", secs(f.p50)), num("fresh:" + name(f.labels) + ":p99", secs(f.p99)), num(null, int(f.count)))));
  }

  function render(s) {
    snap = s;
    document.title = "callstream status · " + s.process;
    document.getElementById("process").textContent = s.process + (s.plugins.length ? " · plug-ins: " + s.plugins.join(", ") : "");
    document.body.dataset.seq = s.seq;
    document.body.dataset.sampledAt = s.sampled_at_ms;
    const has = p => s.plugins.includes(p);
    fill("s-stages", s.stages.length > 0, stages(s));
    fill("s-orgs", s.producer, orgs(s));
    fill("s-alerts", has("alerting"), ...alerts(s));
    fill("s-chart", s.producer, ...chart(s));
    fill("s-webhooks", has("webhooks"), webhooks(s));
    fill("s-dlq", true, ...dlq(s));
    fill("s-lag", s.plugins.length > 0, lag(s));
    fill("s-fresh", true, freshness(s));
    const ge = document.getElementById("gather-error");
    ge.hidden = !s.gather_error;
    ge.textContent = s.gather_error ? "Some metrics could not be read: " + s.gather_error : "";
    document.getElementById("missing").textContent = s.missing.length ? "Not reported by this process yet: " + s.missing.join(", ") : "";
    tick();
    mark();
  }

  // An alert link (the Alertmanager generatorURL) points at #alert-<id>.
  // The element exists only once a snapshot is rendered, and every render
  // makes it anew, so :target cannot be relied on: mark it on each render,
  // scroll to it once.
  function mark() {
    if (!location.hash.startsWith("#alert-")) return;
    const t = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (!t) return;
    t.classList.add("target");
    if (!scrolled) { scrolled = true; t.scrollIntoView({block: "center"}); }
  }

  function tick() {
    if (snap) document.getElementById("updated").textContent = "updated " + clock(snap.sampled_at_ms) + " (" + ago(snap.sampled_at_ms) + ")";
  }

  function live(on) {
    const l = document.getElementById("live");
    l.className = "live " + (on ? "on" : "off");
    l.textContent = on ? "live" : "reconnecting…";
  }

  function start() {
    fetch("/status.json", {cache: "no-store"}).then(r => r.json()).then(s => { if (!snap || s.seq > snap.seq) render(s); }).catch(() => live(false));
    const es = new EventSource("/status/events");
    es.onopen = () => live(true);
    es.onerror = () => live(false);
    es.addEventListener("snapshot", ev => { live(true); render(JSON.parse(ev.data)); });
    setInterval(tick, 1000);
    addEventListener("hashchange", () => { scrolled = false; mark(); });
  }
  start();
})();
