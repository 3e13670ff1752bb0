// The driving page: hold-to-drive controls, live video and status.
//
// Every control source (a pointer on a button, a key, a gamepad) "holds" an
// action; the newest held action wins. While one is held the page re-sends it
// every REPEAT_MS so that the car's deadman (500 ms) never trips; releasing
// the last one sends stop once. Nothing held means nothing sent, and the
// car's deadman stops it if the page goes quiet for any reason. The status
// polls (every STATUS_MS) are the page's heartbeat: in the pilot modes the car
// stops, back in user mode, when they stop for the deadman time (a closed or
// throttled hidden tab, a lost link).
"use strict";

(() => {
  const REPEAT_MS = 120;
  const STATUS_MS = 250;
  const MAP_MS = 1000;
  const STICK_DEADZONE = 0.5;
  const KEYS = {
    ArrowUp: "forward", KeyW: "forward",
    ArrowDown: "backward", KeyS: "backward",
    ArrowLeft: "left", KeyA: "left",
    ArrowRight: "right", KeyD: "right",
  };
  const $ = (id) => document.getElementById(id);

  // --- hold-to-drive ---------------------------------------------------------

  const held = new Map(); // source -> action, in press order
  let current = "stop";
  let repeat = null;

  function send(body) {
    return malpi.request("POST", "/api/control", body);
  }

  function showHeld() {
    for (const btn of document.querySelectorAll(".pad-btn")) {
      btn.classList.toggle("held", btn.dataset.action === current && current !== "stop");
    }
  }

  function apply(force = false) {
    const actions = [...held.values()];
    const next = actions.length ? actions[actions.length - 1] : "stop";
    if (next === current && !force) return;
    current = next;
    clearInterval(repeat);
    repeat = null;
    send({ action: next });
    if (next !== "stop") repeat = setInterval(() => send({ action: current }), REPEAT_MS);
    showHeld();
  }

  function press(source, action) {
    held.delete(source);
    held.set(source, action);
    apply();
  }

  function release(source) {
    if (held.delete(source)) apply();
  }

  function stopAll() {
    held.clear();
    apply(true);
  }

  // On-screen buttons: pointer events cover mouse, touch and pen.
  for (const btn of document.querySelectorAll(".pad-btn")) {
    const action = btn.dataset.action;
    btn.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      btn.setPointerCapture?.(event.pointerId);
      if (action === "stop") stopAll();
      else press(`pointer${event.pointerId}`, action);
    });
    for (const type of ["pointerup", "pointercancel", "pointerleave", "lostpointercapture"]) {
      btn.addEventListener(type, (event) => release(`pointer${event.pointerId}`));
    }
    btn.addEventListener("contextmenu", (event) => event.preventDefault());
  }

  // Keyboard: arrows and WASD hold, space stops.
  window.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.code === "Space") {
      event.preventDefault();
      stopAll();
      return;
    }
    const action = KEYS[event.code];
    if (!action) return;
    event.preventDefault();
    if (!event.repeat) press(`key:${event.code}`, action);
  });
  window.addEventListener("keyup", (event) => release(`key:${event.code}`));

  // Losing focus or hiding the page lets go of everything.
  window.addEventListener("blur", () => { if (held.size) stopAll(); });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden && held.size) stopAll();
  });

  // Gamepad: the left stick or the d-pad (standard mapping 12-15).
  let padAction = null;
  let padPolling = false;

  function gamepadAction(pad) {
    const down = (i) => pad.buttons[i] && pad.buttons[i].pressed;
    if (down(12)) return "forward";
    if (down(13)) return "backward";
    if (down(14)) return "left";
    if (down(15)) return "right";
    const x = pad.axes[0] || 0;
    const y = pad.axes[1] || 0;
    if (Math.max(Math.abs(x), Math.abs(y)) < STICK_DEADZONE) return null;
    if (Math.abs(x) > Math.abs(y)) return x < 0 ? "left" : "right";
    return y < 0 ? "forward" : "backward";
  }

  function pollGamepads() {
    let action = null;
    let name = null;
    for (const pad of navigator.getGamepads ? navigator.getGamepads() : []) {
      if (!pad || !pad.connected) continue;
      name = name || pad.id;
      action = gamepadAction(pad);
      if (action) break;
    }
    if (action !== padAction) {
      padAction = action;
      if (action) press("gamepad", action);
      else release("gamepad");
    }
    $("gamepad").textContent = name ? `gamepad: ${name.split("(")[0].trim()}` : "gamepad: press a button";
    if (name) requestAnimationFrame(pollGamepads);
    else padPolling = false;
  }

  window.addEventListener("gamepadconnected", () => {
    if (!padPolling) {
      padPolling = true;
      requestAnimationFrame(pollGamepads);
    }
  });

  // --- modes and recording ---------------------------------------------------

  let status = null;

  // Each control gives the focus back, so that Space (stop) and the arrows
  // never press a focused button by accident.
  for (const btn of document.querySelectorAll("[data-mode]")) {
    btn.addEventListener("click", () => {
      btn.blur();
      send({ mode: btn.dataset.mode }).then(poll);
    });
  }
  $("record").addEventListener("click", (event) => {
    event.currentTarget.blur();
    const on = !(status && status.recording);
    send({ recording: on }).then(poll);
  });
  $("skip-stopped").addEventListener("change", (event) => {
    event.target.blur();
    send({ skip_stopped: event.target.checked }).then(poll);
  });

  // --- video -----------------------------------------------------------------

  // A hidden page closes its stream: each open stream holds a server thread.
  const video = $("video");
  const videoUrl = () => `/video.mjpg?t=${Date.now()}`;
  video.addEventListener("error", () => {
    if (!document.hidden) setTimeout(() => { video.src = videoUrl(); }, 1000);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) video.removeAttribute("src");
    else video.src = videoUrl();
  });

  // --- status ----------------------------------------------------------------

  const map = $("map");
  let mapTimer = null;

  function refreshMap() {
    map.src = `${status.map_url}?t=${Date.now()}`;
  }

  function describeModel(s) {
    if (s.model_loading) return `loading ${s.model_loading}`;
    const m = s.model;
    if (!m) return "none";
    if (typeof m !== "object") return String(m);
    const name = m.name || (m.sha256 ? m.sha256.slice(0, 12) : "model");
    return [name, m.quantization, m.runtime].filter(Boolean).join(" · ");
  }

  function render(s) {
    status = s;
    for (const btn of document.querySelectorAll("[data-mode]")) {
      btn.setAttribute("aria-pressed", String(btn.dataset.mode === s.mode));
    }
    const rec = $("record");
    rec.setAttribute("aria-pressed", String(Boolean(s.recording)));
    $("record-text").textContent = s.recording ? "Recording" : "Record";
    if ("skip_stopped" in s) $("skip-stopped").checked = Boolean(s.skip_stopped);

    const action = s.action || "stop";
    const chip = $("ov-action");
    chip.textContent = action;
    chip.className = `chip act-${action}`;
    $("ov-rec").hidden = !s.recording;
    $("ov-mode").textContent = { user: "user", pilot: "pilot", correction: "pilot + fix" }[s.mode] || s.mode;
    $("ov-fps").textContent = malpi.fmt(s.fps, " fps", 1);
    $("ov-age").textContent = malpi.fmt(s.frame_age_ms, " ms old");

    $("st-drive").textContent = s.drive || "not recording";
    const total = malpi.fillBalance($("balance"), $("legend"), s.counts);
    $("st-frames").textContent = `${s.frames ?? total} frames`;
    const tripped = s.deadman && s.mode === "user" && s.user_action && s.user_action !== "stop";
    $("st-action").textContent = tripped ? "stop (deadman)" : action;
    $("st-fps").textContent = malpi.fmt(s.fps, " fps", 1);
    $("st-age").textContent = malpi.fmt(s.frame_age_ms, " ms");
    $("st-inference").textContent = malpi.fmt(s.inference_ms, " ms", 1);
    $("st-loop").textContent = malpi.fmt(s.loop_ms, " ms", 1);
    $("st-disk").textContent = s.free_disk_mb == null ? "–"
      : s.free_disk_mb > 2000 ? `${(s.free_disk_mb / 1000).toFixed(1)} GB` : `${Math.round(s.free_disk_mb)} MB`;
    $("st-model").textContent = describeModel(s);
    $("st-hw").textContent = [s.camera, s.drivetrain].filter(Boolean).join(" · ") || "–";

    const sim = s.sim;
    $("st-sim-box").hidden = !sim;
    if (sim) {
      const where = sim.on_track ? "on track" : "off track";
      $("st-sim").textContent = `${sim.track} · ${sim.laps} laps · ${sim.departures} departures · ${where}`;
    }

    const warnings = [];
    if (s.model_error) warnings.push(`Model: ${s.model_error}`);
    if (s.error) warnings.push(`Loop: ${s.error}`);
    if (s.message && s.message !== s.error) warnings.push(s.message);
    if (s.free_disk_mb != null && s.free_disk_mb < 200) {
      warnings.push(`Disk almost full: ${Math.round(s.free_disk_mb)} MB free.`);
    }
    const list = $("warnings");
    list.replaceChildren(...warnings.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));

    map.hidden = !s.map_url;
    if (s.map_url && !mapTimer) {
      refreshMap();
      mapTimer = setInterval(refreshMap, MAP_MS);
    } else if (!s.map_url && mapTimer) {
      clearInterval(mapTimer);
      mapTimer = null;
    }
  }

  async function poll() {
    const s = await malpi.request("GET", "/api/status");
    if (s) render(s);
  }

  async function pollForever() {
    await poll();
    setTimeout(pollForever, STATUS_MS);
  }

  pollForever();
})();
