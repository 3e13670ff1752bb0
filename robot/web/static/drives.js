// The drives page: list recorded drives, step through frames, relabel,
// exclude and undo. The open drive and frame live in the URL hash
// (#<drive>/<frame>) so that a reload or a shared link comes back to them.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const COLORS = {};
  const LABELS = [...document.querySelectorAll("[data-relabel]")].map((b) => b.dataset.relabel);

  let drives = [];
  let drive = null; // detail of the open drive
  let pos = 0; // position in drive.frames
  let anchor = null; // start of a shift-selection

  // --- the list --------------------------------------------------------------

  function driveItem(d) {
    const li = document.createElement("li");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "drive-item";
    btn.dataset.drive = d.name;
    const title = document.createElement("span");
    title.className = "drive-title";
    title.textContent = d.name;
    if (d.recording) {
      const tag = document.createElement("span");
      tag.className = "chip rec-chip";
      tag.textContent = "REC";
      title.append(" ", tag);
    }
    const meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = d.error ? d.error
      : `${d.frames} frames · ${d.duration_s.toFixed(0)} s · ${d.fps.toFixed(1)} fps`
        + (d.excluded ? ` · ${d.excluded} excluded` : "");
    const bar = document.createElement("span");
    bar.className = "balance small";
    for (const label of LABELS) {
      const seg = document.createElement("span");
      seg.className = `seg act-${label}`;
      seg.dataset.action = label;
      bar.append(seg);
    }
    malpi.fillBalance(bar, null, d.counts || {});
    btn.append(title, meta, bar);
    btn.addEventListener("click", () => {
      btn.blur();
      location.hash = `${encodeURIComponent(d.name)}/0`;
    });
    li.append(btn);
    return li;
  }

  async function loadList() {
    const data = await malpi.request("GET", "/api/drives");
    if (!data) return;
    drives = data.drives;
    $("drive-list").replaceChildren(...drives.map(driveItem));
    $("drives-empty").hidden = drives.length > 0;
    const frames = drives.reduce((n, d) => n + (d.frames || 0), 0);
    $("drives-total").textContent = `${drives.length} drives · ${frames} frames`;
    markOpen();
  }

  function markOpen() {
    for (const btn of document.querySelectorAll(".drive-item")) {
      btn.setAttribute("aria-current", String(Boolean(drive) && btn.dataset.drive === drive.name));
    }
  }

  // --- the viewer ------------------------------------------------------------

  function selection() {
    if (!drive || !drive.frames.length) return [];
    const a = anchor === null ? pos : anchor;
    const [lo, hi] = a < pos ? [a, pos] : [pos, a];
    return drive.frames.slice(lo, hi + 1).map((f) => f.index);
  }

  function colorOf(label) {
    if (!COLORS[label]) {
      const probe = document.createElement("i");
      probe.className = `act-${label}`;
      document.body.append(probe);
      COLORS[label] = getComputedStyle(probe).backgroundColor;
      probe.remove();
    }
    return COLORS[label];
  }

  function drawStrip() {
    const canvas = $("v-strip");
    const width = canvas.clientWidth || 600;
    canvas.width = width;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, canvas.height);
    const n = drive.frames.length;
    if (!n) return;
    const step = width / n;
    drive.frames.forEach((f, i) => {
      ctx.globalAlpha = f.excluded ? 0.18 : 1;
      ctx.fillStyle = colorOf(f.action);
      ctx.fillRect(Math.floor(i * step), 4, Math.ceil(step), canvas.height - 8);
    });
    ctx.globalAlpha = 1;
    const sel = selection();
    const lo = drive.frames.findIndex((f) => f.index === sel[0]);
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 2;
    ctx.strokeRect(Math.floor(lo * step) + 1, 1, Math.max(2, sel.length * step) - 2, canvas.height - 2);
  }

  function show() {
    if (!drive) return;
    $("viewer").hidden = false;
    $("v-name").textContent = drive.name;
    const n = drive.frames.length;
    $("v-summary").textContent = `${drive.usable} usable of ${n} · ${drive.edits} edits`;
    const slider = $("v-slider");
    slider.max = String(Math.max(0, n - 1));
    slider.value = String(pos);
    if (!n) {
      $("v-index").textContent = "–";
      $("v-frame").removeAttribute("src");
      return;
    }
    const f = drive.frames[pos];
    $("v-frame").src = `/api/drives/${encodeURIComponent(drive.name)}/frames/${f.index}.jpg`;
    $("v-index").textContent = String(f.index);
    $("v-pos").textContent = `(${pos + 1} of ${n})`;
    const chip = $("v-action");
    chip.textContent = f.action;
    chip.className = `chip act-${f.action}`;
    $("v-excluded").hidden = !f.excluded;
    $("v-recorded").textContent = f.recorded === f.action ? f.recorded : `${f.recorded} → ${f.action}`;
    $("v-mode").textContent = f.mode;
    const sel = selection();
    $("v-selection").textContent = sel.length > 1 ? `${sel.length} frames (${sel[0]}–${sel[sel.length - 1]})` : "this frame";
    $("v-exclude").lastChild.textContent = f.excluded ? " Include" : " Exclude";
    for (const b of document.querySelectorAll("[data-relabel]")) {
      b.setAttribute("aria-pressed", String(b.dataset.relabel === f.action));
    }
    drawStrip();
    history.replaceState(null, "", `#${encodeURIComponent(drive.name)}/${f.index}`);
  }

  async function open(name, index) {
    const data = await malpi.request("GET", `/api/drives/${encodeURIComponent(name)}`);
    if (!data) return;
    drive = data;
    const found = drive.frames.findIndex((f) => f.index === index);
    pos = found >= 0 ? found : 0;
    anchor = null;
    markOpen();
    show();
  }

  function step(delta, extend = false) {
    if (!drive || !drive.frames.length) return;
    if (extend && anchor === null) anchor = pos;
    if (!extend) anchor = null;
    pos = Math.min(drive.frames.length - 1, Math.max(0, pos + delta));
    show();
  }

  async function edit(body) {
    if (!drive) return;
    const data = await malpi.request("POST", `/api/drives/${encodeURIComponent(drive.name)}/edit`, body);
    if (!data) return;
    const index = drive.frames[pos] && drive.frames[pos].index;
    drive = data;
    pos = Math.max(0, drive.frames.findIndex((f) => f.index === index));
    show();
    loadList();
  }

  function relabel(action) {
    const indices = selection();
    if (indices.length) edit({ op: "relabel", indices, action });
  }

  function toggleExclude() {
    const indices = selection();
    if (!indices.length) return;
    const f = drive.frames[pos];
    edit({ op: f.excluded ? "include" : "exclude", indices });
  }

  // --- wiring ----------------------------------------------------------------

  $("v-prev").addEventListener("click", () => step(-1));
  $("v-next").addEventListener("click", () => step(1));
  $("v-slider").addEventListener("input", (e) => { anchor = null; pos = Number(e.target.value); show(); });
  $("v-undo").addEventListener("click", () => edit({ op: "undo" }));
  $("v-exclude").addEventListener("click", toggleExclude);
  for (const b of document.querySelectorAll("[data-relabel]")) {
    b.addEventListener("click", () => relabel(b.dataset.relabel));
  }
  $("v-strip").addEventListener("click", (e) => {
    if (!drive || !drive.frames.length) return;
    const rect = e.currentTarget.getBoundingClientRect();
    anchor = null;
    pos = Math.min(drive.frames.length - 1, Math.floor(((e.clientX - rect.left) / rect.width) * drive.frames.length));
    show();
  });

  window.addEventListener("keydown", (e) => {
    if (!drive || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target instanceof HTMLInputElement && e.target.type !== "range") return;
    const big = Math.max(1, Math.round(drive.frames.length / 20));
    const keys = {
      ArrowLeft: () => step(-1, e.shiftKey),
      ArrowRight: () => step(1, e.shiftKey),
      PageUp: () => step(-big, e.shiftKey),
      PageDown: () => step(big, e.shiftKey),
      Home: () => step(-drive.frames.length, e.shiftKey),
      End: () => step(drive.frames.length, e.shiftKey),
      KeyX: toggleExclude,
      KeyU: () => edit({ op: "undo" }),
    };
    const digit = /^Digit([0-9])$/.exec(e.code);
    if (digit && Number(digit[1]) < LABELS.length) {
      e.preventDefault();
      relabel(LABELS[Number(digit[1])]);
    } else if (keys[e.code]) {
      e.preventDefault();
      keys[e.code]();
    }
  });

  function fromHash() {
    const [name, index] = location.hash.slice(1).split("/");
    if (name && (!drive || decodeURIComponent(name) !== drive.name)) {
      open(decodeURIComponent(name), Number(index || 0));
    }
  }
  window.addEventListener("hashchange", fromHash);
  window.addEventListener("resize", () => { if (drive) drawStrip(); });

  loadList().then(() => {
    if (location.hash.length > 1) fromHash();
    else if (drives.length && !drives[0].error) open(drives[0].name, 0);
  });
  setInterval(loadList, 5000);
})();
