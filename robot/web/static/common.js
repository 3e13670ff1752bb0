// Shared by the MaLPi pages: JSON requests, the connection pill and toasts.
"use strict";

const malpi = (() => {
  const conn = document.getElementById("conn");
  const toast = document.getElementById("toast");
  let toastTimer = null;

  function setConn(state, text) {
    if (!conn) return;
    conn.dataset.state = state;
    conn.textContent = text;
  }

  function showToast(text, ms = 3500) {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, ms);
  }

  function unauthorized() {
    setConn("bad", "no token");
    showToast("Access refused: open the URL that `robot drive` printed (with ?token=...).", 10000);
  }

  // Send a JSON request; resolves to the parsed reply (or null), never throws.
  async function request(method, url, body) {
    const options = { method, cache: "no-store", credentials: "same-origin" };
    if (body !== undefined) {
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      setConn("bad", "offline");
      return null;
    }
    if (response.status === 401) {
      unauthorized();
      return null;
    }
    setConn("ok", "connected");
    if (response.status === 204) return {};
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      showToast((data && data.error) || `${response.status} ${response.statusText}`);
      return null;
    }
    return data;
  }

  function fmt(value, unit, digits = 0) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return `${Number(value).toFixed(digits)}${unit}`;
  }

  // Fill a stacked bar (one .seg per action) and its legend from counts.
  function fillBalance(bar, legend, counts) {
    const total = Object.values(counts || {}).reduce((a, b) => a + b, 0);
    for (const seg of bar.querySelectorAll(".seg")) {
      const n = (counts && counts[seg.dataset.action]) || 0;
      seg.style.width = total ? `${(100 * n) / total}%` : "0";
      seg.title = `${seg.dataset.action}: ${n}`;
    }
    if (!legend) return total;
    for (const item of legend.querySelectorAll("li")) {
      const n = (counts && counts[item.dataset.action]) || 0;
      const share = total ? Math.round((100 * n) / total) : 0;
      item.querySelector("b").textContent = total ? `${n} · ${share}%` : "0";
    }
    return total;
  }

  return { request, setConn, showToast, fmt, fillBalance };
})();
