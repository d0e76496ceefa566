// The playground: sends the form to POST /v1/completions with stream: true and logprobs: 5,
// reads the server-sent events as they arrive, and shows each generated token coloured by
// its probability, with its top-5 alternatives on hover or keyboard focus. No libraries.
"use strict";

const $ = (id) => document.getElementById(id);
let controller = null; // the AbortController of the request in flight (Stop aborts it)
let pending = []; // token infos whose text has not arrived yet (a held-back character)

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function unescape(text) { // the Stop box takes \n and \t as the characters they name
  return text.replace(/\\n/g, "\n").replace(/\\t/g, "\t");
}

function numberOrNull(id) {
  const value = $(id).value.trim();
  return value === "" ? null : Number(value);
}

function requestBody() {
  const body = {
    prompt: $("prompt").value, max_tokens: Number($("max_tokens").value),
    temperature: Number($("temperature").value), top_p: Number($("top_p").value),
    stream: true, logprobs: 5,
  };
  const topK = numberOrNull("top_k"), seed = numberOrNull("seed"), stop = $("stop").value;
  if (topK !== null) body.top_k = topK;
  if (seed !== null) body.seed = seed;
  if (stop) body.stop = unescape(stop);
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "status-error" : "";
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("stop_button").disabled = !busy;
}

function colour(probability) { // red (unlikely) through yellow to green (likely)
  return `hsl(${Math.round(120 * probability)} 80% 80%)`;
}

function addText(text, tokens) {
  const output = $("output");
  if (!tokens.length) { output.append(document.createTextNode(text)); return; }
  const span = document.createElement("span");
  span.className = "tok";
  span.tabIndex = -1;
  span.textContent = text;
  const probability = Math.exp(tokens.reduce((sum, t) => sum + t.logprob, 0));
  span.style.background = colour(probability);
  span.dataset.tokens = JSON.stringify(tokens);
  span.setAttribute("aria-label", `${text}: ${(100 * probability).toFixed(1)} percent`);
  output.append(span);
}

function onChoice(choice) {
  const lp = choice.logprobs;
  const tokens = lp ? lp.tokens.map((token, i) => ({
    token, logprob: lp.token_logprobs[i], top: Object.entries(lp.top_logprobs[i] || {}),
  })) : [];
  pending = pending.concat(tokens);
  if (choice.text) {
    addText(choice.text, pending);
    pending = [];
  }
  if (choice.finish_reason) setStatus(`done (${choice.finish_reason})`);
}

async function readEvents(response) { // server-sent events: blocks of "data: ..." lines
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const event = JSON.parse(data);
        if (event.error) throw new Error(event.error.message);
        event.choices.forEach(onChoice);
      }
    }
  }
}

async function generate() {
  if (controller) return;
  if (!$("form").reportValidity()) return;
  hideTooltip();
  const output = $("output");
  output.replaceChildren();
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = $("prompt").value;
  output.append(prompt);
  pending = [];
  controller = new AbortController();
  setBusy(true);
  setStatus("generating…");
  try {
    const response = await fetch("v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody()), signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    await readEvents(response);
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped");
    else setStatus(`error: ${err.message}`, true);
  } finally {
    controller = null;
    setBusy(false);
  }
}

function stop() {
  if (controller) controller.abort();
}

// ---- the top-5 tooltip: on hover, and on keyboard focus moved with the arrow keys ----

function shown(token) { // JSON quoting makes spaces, newlines and empty tokens visible
  return JSON.stringify(token);
}

function showTooltip(span) {
  const tokens = JSON.parse(span.dataset.tokens);
  const tip = $("tooltip");
  tip.replaceChildren();
  for (const t of tokens) {
    const table = document.createElement("table");
    const caption = document.createElement("caption");
    caption.textContent = `chose ${shown(t.token)} (${(100 * Math.exp(t.logprob)).toFixed(1)}%); top ${t.top.length}:`;
    table.append(caption);
    for (const [alt, logprob] of t.top) {
      const row = table.insertRow();
      if (alt === t.token) row.className = "chosen";
      row.insertCell().textContent = shown(alt);
      const p = row.insertCell();
      p.className = "p";
      p.textContent = `${(100 * Math.exp(logprob)).toFixed(1)}%`;
    }
    tip.append(table);
  }
  tip.hidden = false;
  const box = span.getBoundingClientRect();
  const left = Math.min(box.left, document.documentElement.clientWidth - tip.offsetWidth - 8);
  tip.style.left = `${Math.max(4, left) + window.scrollX}px`;
  tip.style.top = `${box.bottom + window.scrollY + 4}px`;
}

function hideTooltip() {
  $("tooltip").hidden = true;
}

function tokens() {
  return Array.from($("output").querySelectorAll(".tok"));
}

function focusToken(span) {
  for (const t of tokens()) t.classList.toggle("focused", t === span);
  span.focus();
  showTooltip(span);
}

function onOutputKey(event) {
  const all = tokens();
  if (!all.length) return;
  const at = all.indexOf(document.activeElement);
  const moves = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1,
                  Home: 0, End: all.length - 1 };
  if (event.key === "Escape") { hideTooltip(); $("output").focus(); return; }
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = at < 0 ? (event.key === "ArrowLeft" || event.key === "End" ? all.length - 1 : 0) : moves[event.key];
  focusToken(all[Math.max(0, Math.min(all.length - 1, next))]);
}

function init() {
  $("prompt").value = $("prompt").value || "Once upon a time";
  $("form").addEventListener("submit", (event) => { event.preventDefault(); generate(); });
  $("stop_button").addEventListener("click", stop);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); generate(); }
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });
  const output = $("output");
  output.addEventListener("keydown", onOutputKey);
  output.addEventListener("mouseover", (event) => {
    if (event.target.classList.contains("tok")) showTooltip(event.target);
  });
  output.addEventListener("mouseleave", hideTooltip);
  output.addEventListener("focusout", (event) => {
    if (!output.contains(event.relatedTarget)) hideTooltip();
  });
  fetch("v1/models", { headers: headers() })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
    .then((body) => { $("model").textContent = `model: ${body.data[0].id}`; })
    .catch(() => { $("model").textContent = "model: (enter the API key to use this server)"; });
}

init();
