"use strict";
// aescore contact sheet. Everything from the run (file names included) is data: it is read from the
// JSON block and put into the page with textContent / properties only, never as markup.
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const P = D.photos; // rank order
  const $ = (id) => document.getElementById(id);
  const CARD_W = 232, CARD_H = 292, HEAD_H = 34, GAP = 8, BUFFER = 600;

  const decided = new Map(); // photo index -> {rating, pick}
  let dirty = false; // decisions changed since the last export
  let order = []; // photo indexes shown, in display order
  let rows = []; // layout: {top, h, head?: text, items?: [positions in order]}
  let posRow = []; // position in order -> row index
  let cols = 1;
  let cur = 0; // position in order of the current photo
  const shown = new Map(); // row index -> element on screen

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function rating(i) {
    const d = decided.get(i);
    return d ? d.rating : P[i].stars;
  }

  function starsText(r) {
    if (r === null || r === undefined) return "no stars";
    if (r < 0) return "\u2715 rejected";
    if (r === 0) return "unrated";
    return "\u2605".repeat(r) + "\u2606".repeat(5 - r);
  }

  function fmtScore(s) {
    return s === null ? "\u2013" : s.toFixed(3);
  }

  // ------------------------------------------------------------------ header, filters

  const hasGroups = P.some((p) => p.group !== null);
  $("title").textContent = D.title;
  if (!hasGroups) {
    $("view").disabled = true;
    $("best-label").hidden = true;
  } else {
    $("view").value = "bursts";
  }
  // Filters and badges come from the checks' declared fields (D.fields), not from a list here.
  const isSet = (v) => v !== null && v !== undefined && v !== "" && v !== "none" && v !== "0" && v !== "false";
  const filters = []; // [{name, select}]
  for (const f of D.fields) {
    if (!f.filter) continue;
    const values = [...new Set(P.map((p) => p.f[f.name]).filter(isSet))].sort();
    if (values.length === 0) continue;
    const label = el("label", null, f.filter + " ");
    const select = el("select");
    select.id = document.getElementById(f.filter) ? "filter-" + f.name : f.filter; // never a control's id
    const any = el("option", null, "any");
    any.value = "";
    select.appendChild(any);
    for (const v of values) {
      const o = el("option", null, v);
      o.value = v;
      select.appendChild(o);
    }
    label.appendChild(select);
    $("best-label").before(label);
    filters.push({ name: f.name, select });
  }
  const badgeFields = D.fields.filter((f) => f.badge).map((f) => f.name);
  function badges(p) {
    return badgeFields.map((n) => p.f[n]).filter(isSet).join(" \u00b7 ");
  }
  $("skipped").hidden = D.skipped.length === 0;
  $("skipped-summary").textContent = D.skipped.length + " skipped";
  const tbody = $("skipped-table").tBodies[0];
  for (const s of D.skipped) {
    const tr = el("tr");
    tr.appendChild(el("td", null, s.name));
    tr.appendChild(el("td", null, s.reason));
    tbody.appendChild(tr);
  }

  function passes(i) {
    const p = P[i];
    const min = parseFloat($("min-score").value);
    if (!isNaN(min) && !(p.score !== null && p.score >= min)) return false;
    const sf = $("stars").value;
    if (sf !== "any") {
      const r = rating(i), want = parseInt(sf, 10);
      if (want === -1 && r !== -1) return false;
      if (want === 0 && !(r === 0 || r === null)) return false;
      if (want > 0 && !(r !== null && r >= want)) return false;
    }
    for (const { name, select } of filters) {
      if (select.value && p.f[name] !== select.value) return false;
    }
    if (hasGroups && $("best-only").checked && p.best !== true) return false;
    return true;
  }

  const sorters = {
    rank: (a, b) => P[a].rank - P[b].rank,
    worst: (a, b) => P[b].rank - P[a].rank,
    time: (a, b) => cmpText(P[a].time, P[b].time) || P[a].rank - P[b].rank,
    name: (a, b) => cmpText(P[a].name, P[b].name) || P[a].rank - P[b].rank,
  };
  function cmpText(x, y) {
    if (x === y) return 0;
    if (x === null) return 1; // missing values last
    if (y === null) return -1;
    return x < y ? -1 : 1;
  }

  // ------------------------------------------------------------------ layout (virtual grid)

  function relayout(keepPhoto) {
    const keep = keepPhoto !== undefined ? keepPhoto : order[cur];
    order = P.map((_, i) => i).filter(passes).sort(sorters[$("sort").value]);
    const grid = $("grid");
    cols = Math.max(1, Math.floor((grid.clientWidth + GAP) / (CARD_W + GAP)));
    rows = [];
    posRow = new Array(order.length);
    let top = 0;
    const push = (positions) => {
      for (let k = 0; k < positions.length; k += cols) {
        const items = positions.slice(k, k + cols);
        for (const pos of items) posRow[pos] = rows.length;
        rows.push({ top, h: CARD_H + GAP, items });
        top += CARD_H + GAP;
      }
    };
    if ($("view").value === "bursts" && hasGroups) {
      // Groups in order of their first photo under the chosen sort; photos keep that sort inside.
      const groups = new Map();
      order.forEach((i, pos) => {
        const g = P[i].group === null ? "none" : P[i].group;
        if (!groups.has(g)) groups.set(g, []);
        groups.get(g).push(pos);
      });
      // Renumber positions so that each group is contiguous.
      const newOrder = [];
      for (const positions of groups.values()) for (const pos of positions) newOrder.push(order[pos]);
      order = newOrder;
      posRow = new Array(order.length);
      let pos = 0;
      for (const [g, positions] of groups) {
        const n = positions.length;
        const label = g === "none" ? "Not grouped" : "Burst " + g;
        rows.push({ top, h: HEAD_H, head: label + " \u00b7 " + n + (n === 1 ? " photo" : " photos") });
        top += HEAD_H;
        push(positions.map(() => pos++));
      }
    } else {
      push(order.map((_, pos) => pos));
    }
    grid.style.height = top + "px";
    for (const e of shown.values()) e.remove();
    shown.clear();
    const at = order.indexOf(keep);
    cur = at >= 0 ? at : 0;
    $("stats").textContent =
      P.length + " photos \u00b7 showing " + order.length + (decided.size ? " \u00b7 " + decided.size + " decided" : "");
    render();
  }

  function visibleRows() {
    const grid = $("grid");
    const y0 = window.scrollY - grid.offsetTop - BUFFER;
    const y1 = window.scrollY - grid.offsetTop + window.innerHeight + BUFFER;
    // Binary search for the first row ending below y0.
    let lo = 0, hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (rows[mid].top + rows[mid].h < y0) lo = mid + 1;
      else hi = mid;
    }
    const out = [];
    for (let r = lo; r < rows.length && rows[r].top <= y1; r++) out.push(r);
    return out;
  }

  function render() {
    const want = new Set(visibleRows());
    for (const [r, e] of shown) {
      if (!want.has(r)) {
        e.remove();
        shown.delete(r);
      }
    }
    const grid = $("grid");
    for (const r of want) {
      if (shown.has(r)) continue;
      const row = rows[r];
      let e;
      if (row.head !== undefined) {
        e = el("div", "ghead", row.head);
      } else {
        e = el("div", "grow");
        for (const pos of row.items) e.appendChild(card(pos));
      }
      e.style.top = row.top + "px";
      grid.appendChild(e);
      shown.set(r, e);
    }
  }

  function card(pos) {
    const i = order[pos], p = P[i];
    const c = el("div", "card" + (pos === cur ? " cur" : "") + (p.best ? " best" : ""));
    c.dataset.pos = String(pos);
    const box = el("div", "thumb");
    if (p.thumb) {
      const img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = "";
      img.width = p.tw;
      img.height = p.th;
      img.src = D.files + p.thumb;
      box.appendChild(img);
    } else {
      box.appendChild(el("span", "nothumb", "no preview"));
    }
    if (p.best) box.appendChild(el("span", "badge", "\u2605 best"));
    if (decided.has(i)) box.appendChild(el("span", "dec", decided.get(i).pick ? "picked" : "decided"));
    c.appendChild(box);
    const meta = el("div", "meta");
    meta.appendChild(el("div", "name", p.base)).title = p.name;
    const line = el("div");
    line.appendChild(el("span", null, "#" + p.rank + "  " + fmtScore(p.score) + "  "));
    const r = rating(i);
    line.appendChild(el("span", r !== null && r < 0 ? "rejected" : "stars", starsText(r)));
    meta.appendChild(line);
    const badge = badges(p);
    meta.appendChild(el("div", "reason", badge ? "\u26a0 " + badge : "\u00a0"));
    meta.appendChild(el("div", null, p.time || "\u00a0"));
    meta.appendChild(el("div", null, [p.camera, p.lens].filter((x) => x).join(" \u00b7 ") || "\u00a0"));
    meta.appendChild(el("div", "muted", p.exposure || "\u00a0"));
    c.appendChild(meta);
    return c;
  }

  function refreshRow(pos) {
    const r = posRow[pos];
    const e = shown.get(r);
    if (!e) return;
    shown.delete(r);
    e.remove();
    render();
  }

  // ------------------------------------------------------------------ selection, decisions

  function select(pos) {
    if (order.length === 0) return;
    pos = Math.max(0, Math.min(order.length - 1, pos));
    const old = cur;
    cur = pos;
    refreshRow(old);
    const row = rows[posRow[pos]];
    const grid = $("grid");
    const header = $("top").offsetHeight;
    const y = grid.offsetTop + row.top;
    if (y - header < window.scrollY) window.scrollTo(0, y - header - GAP);
    else if (y + row.h > window.scrollY + window.innerHeight) window.scrollTo(0, y + row.h - window.innerHeight);
    render();
    refreshRow(pos);
    if (!$("preview").hidden) showPreview();
  }

  function decide(value) {
    if (order.length === 0) return;
    const i = order[cur];
    if (value === "undo") decided.delete(i);
    else if (value === "pick") {
      // Pick = keep: the suggested stars (at least 1); `aescore apply` keeps a rating already in the sidecar.
      const s = P[i].stars;
      decided.set(i, { rating: s !== null && s >= 1 ? s : 1, pick: true });
    } else decided.set(i, { rating: value, pick: false });
    dirty = decided.size > 0;
    $("export").disabled = decided.size === 0;
    $("export").textContent = "Export decisions" + (decided.size ? " (" + decided.size + ")" : "");
    $("stats").textContent =
      P.length + " photos \u00b7 showing " + order.length + (decided.size ? " \u00b7 " + decided.size + " decided" : "");
    refreshRow(cur);
    if (!$("preview").hidden) showPreview();
  }

  function exportDecisions() {
    const list = [...decided.entries()]
      .sort((a, b) => P[a[0]].rank - P[b[0]].rank)
      .map(([i, d]) => ({ path: P[i].path, rating: d.rating, pick: d.pick, score: P[i].score }));
    const doc = {
      format: "aescore-decisions",
      version: 1,
      title: D.title,
      model: D.model,
      exported: new Date().toISOString(),
      decisions: list,
    };
    const blob = new Blob([JSON.stringify(doc, null, 1) + "\n"], { type: "application/json" });
    const a = el("a");
    a.href = URL.createObjectURL(blob);
    a.download = D.decisions_name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    dirty = false;
  }

  // ------------------------------------------------------------------ preview and region map

  function showPreview() {
    const i = order[cur], p = P[i];
    $("preview").hidden = false;
    const img = $("pv-img");
    const canvas = $("pv-map");
    canvas.hidden = true;
    img.onload = () => placeMap(p);
    img.src = p.thumb ? D.files + p.thumb : "";
    if (p.uri) {
      // The original, when the browser can show it; the thumbnail stays if it cannot be read.
      const full = new Image();
      full.onload = () => {
        if (order[cur] === i && !$("preview").hidden) img.src = p.uri;
      };
      full.src = p.uri;
    }
    $("pv-name").textContent = p.name;
    const dl = $("pv-fields");
    dl.replaceChildren();
    const add = (k, v) => {
      if (v === null || v === undefined || v === "") return;
      dl.appendChild(el("dt", null, k));
      dl.appendChild(el("dd", null, v));
    };
    add("rank", "#" + p.rank + " of " + P.length);
    add("score", fmtScore(p.score));
    add("stars", starsText(rating(i)) + (decided.has(i) ? " (your decision)" : ""));
    if (p.stars !== null && decided.has(i)) add("suggested", starsText(p.stars));
    if (p.group !== null) add("burst", p.group + (p.best ? " (best)" : ""));
    add("captured", p.time);
    add("camera", p.camera);
    add("lens", p.lens);
    add("exposure", p.exposure);
    if (p.faults) {
      const f = Object.entries(p.faults).sort((a, b) => b[1] - a[1]);
      add("faults", f.map(([k, v]) => k + " " + v.toFixed(2)).join(", "));
    }
    for (const [k, v] of Object.entries(p.extra || {})) add(k, v);
    $("pv-map-label").hidden = !p.map;
    drawFaces(p);
    $("pv-map-note").textContent = p.map
      ? "Red: regions that count towards a high score, blue: towards a low one (per-region logit, \u00b1" +
        p.map.s + "; mean " + p.map.mean + ")."
      : "";
  }

  function fitPreview() {
    // Fill the stage (small thumbnails are enlarged up to 2x; the region map follows the image).
    const img = $("pv-img"), stage = $("pv-stage");
    if (!img.naturalWidth) return;
    const s = Math.min(2, (stage.clientWidth - 24) / img.naturalWidth, (stage.clientHeight - 24) / img.naturalHeight);
    img.style.width = Math.round(img.naturalWidth * s) + "px";
    img.style.height = Math.round(img.naturalHeight * s) + "px";
  }

  function drawFaces(p) {
    // The faces check's boxes (fractions of the photo) over the preview; closed eyes in red with a
    // label, a soft face dashed. Text and sizes are set as properties, never as markup.
    const layer = $("pv-faces");
    layer.replaceChildren();
    const faces = p.faces || [];
    $("pv-faces-label").hidden = faces.length === 0;
    $("pv-faces-note").textContent = faces.length
      ? faces.length + (faces.length === 1 ? " face" : " faces") + ": red = eyes closed, dashed = soft (out of focus)."
      : "";
    layer.hidden = faces.length === 0 || !$("pv-faces-on").checked;
    for (const f of faces) {
      const closed = f.eyes === "closed", soft = f.focus === "soft";
      const box = el("div", "face" + (closed ? " closed" : "") + (soft ? " soft" : ""));
      box.style.left = 100 * f.b[0] + "%";
      box.style.top = 100 * f.b[1] + "%";
      box.style.width = 100 * (f.b[2] - f.b[0]) + "%";
      box.style.height = 100 * (f.b[3] - f.b[1]) + "%";
      const words = [closed ? "eyes closed" : null, soft ? "soft" : null].filter((w) => w);
      if (words.length) box.appendChild(el("span", null, words.join(", ")));
      layer.appendChild(box);
    }
  }

  function placeMap(p) {
    const canvas = $("pv-map"), img = $("pv-img");
    fitPreview();
    drawFaces(p);
    if (!p.map || !$("pv-map-on").checked) {
      canvas.hidden = true;
      return;
    }
    const m = p.map;
    canvas.width = m.w;
    canvas.height = m.h;
    const bytes = atob(m.q);
    const ctx = canvas.getContext("2d");
    const im = ctx.createImageData(m.w, m.h);
    for (let k = 0; k < m.w * m.h; k++) {
      const v = (bytes.charCodeAt(k) - 128) / 127; // -1..1
      const o = 4 * k;
      if (v >= 0) {
        im.data[o] = 255; im.data[o + 1] = 60; im.data[o + 2] = 30;
      } else {
        im.data[o] = 30; im.data[o + 1] = 110; im.data[o + 2] = 255;
      }
      im.data[o + 3] = Math.round(255 * Math.min(1, Math.abs(v)));
    }
    ctx.putImageData(im, 0, 0);
    // Where the network looked: the whole photo, or its centre crop of aspect <= overlay_max_aspect.
    const W = img.clientWidth, H = img.clientHeight, a = W / H, M = D.overlay_max_aspect;
    let fw = 1, fh = 1;
    if (M) {
      if (a > M) fw = M / a;
      else if (1 / a > M) fh = M * a;
    }
    canvas.style.width = W * fw + "px";
    canvas.style.height = H * fh + "px";
    canvas.style.left = (W * (1 - fw)) / 2 + "px";
    canvas.style.top = (H * (1 - fh)) / 2 + "px";
    canvas.hidden = false;
  }

  function closePreview() {
    $("preview").hidden = true;
    $("pv-img").src = "";
  }

  // ------------------------------------------------------------------ events

  const controls = ["view", "sort", "min-score", "stars", "best-only"].map($).concat(filters.map((f) => f.select));
  for (const control of controls) {
    control.addEventListener("input", () => relayout());
    control.addEventListener("change", (e) => {
      relayout();
      e.target.blur(); // give the keys back to the grid
    });
  }
  $("export").addEventListener("click", exportDecisions);
  $("pv-close").addEventListener("click", closePreview);
  $("pv-map-on").addEventListener("change", () => placeMap(P[order[cur]]));
  $("pv-faces-on").addEventListener("change", () => drawFaces(P[order[cur]]));
  $("grid").addEventListener("click", (e) => {
    const c = e.target.closest(".card");
    if (!c) return;
    select(parseInt(c.dataset.pos, 10));
    showPreview();
  });
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  };
  window.addEventListener("scroll", schedule, { passive: true });
  let lastCols = -1;
  window.addEventListener("resize", () => {
    const c = Math.max(1, Math.floor(($("grid").clientWidth + GAP) / (CARD_W + GAP)));
    if (c !== lastCols) {
      lastCols = c;
      relayout();
    } else schedule();
    if (!$("preview").hidden) placeMap(P[order[cur]]);
  });
  window.addEventListener("beforeunload", (e) => {
    if (dirty) {
      e.preventDefault();
      e.returnValue = "";
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const inPreview = !$("preview").hidden;
    if (e.key === "Escape") {
      if (inPreview) closePreview();
      else if (document.activeElement) document.activeElement.blur();
      return;
    }
    const t = e.target, k = e.key;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (t && t.tagName === "BUTTON" && (k === "Enter" || k === " ")) return;
    let handled = true;
    if (k === "ArrowRight") select(cur + 1);
    else if (k === "ArrowLeft") select(cur - 1);
    else if (k === "ArrowDown") select(inPreview ? cur + 1 : cur + cols);
    else if (k === "ArrowUp") select(inPreview ? cur - 1 : cur - cols);
    else if (k === "Enter" || k === " ") inPreview ? closePreview() : order.length && showPreview();
    else if (k >= "0" && k <= "5" && k.length === 1) decide(parseInt(k, 10));
    else if (k === "x" || k === "X") decide(-1);
    else if (k === "p" || k === "P") decide("pick");
    else if (k === "u" || k === "U") decide("undo");
    else if ((k === "m" || k === "M") && inPreview) {
      $("pv-map-on").checked = !$("pv-map-on").checked;
      placeMap(P[order[cur]]);
    } else if ((k === "f" || k === "F") && inPreview) {
      $("pv-faces-on").checked = !$("pv-faces-on").checked;
      drawFaces(P[order[cur]]);
    } else handled = false;
    if (handled) e.preventDefault();
  });

  relayout();
  lastCols = cols;
  document.body.dataset.ready = "1"; // for tests and scripts: the first layout is done
})();
